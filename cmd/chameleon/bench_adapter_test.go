package main

import (
	"slices"
	"testing"
)

// Short texts are joined in order to reach the length; long ones stay; a
// tail that cannot reach it is dropped.
func TestJoinTo(t *testing.T) {
	got := joinTo([][]int32{{1, 2}, {3}, {4, 5, 6}, {7, 8, 9, 10}, {11}}, 3)
	want := [][]int32{{1, 2, 3}, {4, 5, 6}, {7, 8, 9, 10}}
	if !slices.EqualFunc(got, want, slices.Equal[[]int32]) {
		t.Fatalf("joinTo: %v, want %v", got, want)
	}
	if got := joinTo([][]int32{{1}, {2}}, 3); len(got) != 0 {
		t.Fatalf("joinTo of too little: %v, want nothing", got)
	}
}
