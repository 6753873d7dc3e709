package main

import (
	"github.com/spf13/cobra"
)

func adaptCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "adapt",
		Short: "Train and evaluate low-rank adapters of the output projection: ChamaleonLLM's hyper-network, static LoRA, per-domain experts",
	}
	c.AddCommand(adaptTrainCmd(), adaptBenchCmd(), adaptScoreCmd(), adaptCacheCmd(), adaptGateCmd(), adaptGateCurveCmd(), adaptTuneCmd(), adaptControlsCmd(), adaptStageCmd())
	return c
}
