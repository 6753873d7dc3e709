package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// parseEpochs reads --epochs: positive integers, comma-separated, none
// repeated.
func parseEpochs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 || slices.Contains(out, v) {
			return nil, fmt.Errorf("--epochs %q: want positive whole numbers, comma-separated, none repeated", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// clusterSizesUsage is --cluster-sizes' help.
const clusterSizesUsage = "training windows a cluster of the hyper-networks (k-means cuts the training windows into n/size clusters, whose centroids online assignment serves); several, comma-separated (e.g. 16,64,256), are a grid chosen on validation with the rate (empty: the batch size)"

// parseClusterSizes reads --cluster-sizes: positive whole numbers,
// comma-separated, none repeated (empty: none).
func parseClusterSizes(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	out, err := parseEpochs(s)
	if err != nil {
		return nil, fmt.Errorf("--cluster-sizes %q: want positive whole numbers, comma-separated, none repeated", s)
	}
	return out, nil
}

// parseRates reads --lrs: positive numbers, comma-separated.
func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) {
			return nil, fmt.Errorf("--lrs %q: want positive numbers, comma-separated", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// gateDecaysUsage is --gate-decays' help.
const gateDecaysUsage = "weight decay of the gated bases' gate networks (AdamW's, on the network's weight matrices alone; large values make every cluster's gates alike, a LoRA of the pair); several, comma-separated (e.g. 0,0.1,1), are a grid chosen on validation with the rate (empty: none)"

// parseDecays reads --gate-decays: finite numbers >= 0, comma-separated,
// none repeated (empty: none).
func parseDecays(s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v >= 0) || math.IsInf(v, 0) || slices.Contains(out, v) {
			return nil, fmt.Errorf("--gate-decays %q: want finite numbers >= 0, comma-separated, none repeated", s)
		}
		out = append(out, v)
	}
	return out, nil
}
