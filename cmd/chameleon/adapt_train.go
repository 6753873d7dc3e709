package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func adaptTrainCmd() *cobra.Command {
	return &cobra.Command{Use: "train", Short: "Train an adapter (in progress)", RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("adapt train: not built yet")
	}}
}

func adaptEvalCmd() *cobra.Command {
	return &cobra.Command{Use: "eval", Short: "Evaluate adapters (in progress)", RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("adapt eval: not built yet")
	}}
}
