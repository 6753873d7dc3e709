package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/adaptrun"
	"github.com/chameleon-llm/chameleon/gpu"
)

// Shell completion: cobra's `chameleon completion bash|zsh|fish|powershell`
// writes the script; registerCompletions adds the values of the flags that
// take one of a fixed set, so that the shell offers them.

// flagValues are the values of the enum flags, by flag name.
var flagValues = map[string][]string{
	"dtype":      {"f32", "f16"},
	"adapt-mode": {string(adapt.ModeBatch), string(adapt.ModeOnline), string(adapt.ModeOne)},
	"config":     nil, // configNames(), filled in registerCompletions
	"log":        {"text", "json", "off"},
	"features":   {adapt.FeatureEmbed, adapt.FeatureHidden, adapt.FeatureBoth},
	"method":     strings.Split(adaptrun.MethodNames, ", "),
}

// commandFlagValues override flagValues for one command ("command flag",
// the command path without "chameleon ").
var commandFlagValues = map[string][]string{
	"serve adapt-mode": {"online", "window", "tuned"},
	"convert dtype":    {"f32", "f16", "bf16"},
	"init dtype":       {"f32", "f16", "bf16"},
	"init config":      {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny"},
	"train config":     nil, // configNames() + custom, in registerCompletions
}

// adapterValues complete --adapter: the named adapters, and files.
var adapterValues = map[string][]string{
	"":      {"default", "none"},
	"bench": {"default", "random", "none"},
	"serve": {"default", "none"},
	"soak":  {"default", "none"},
}

// registerCompletions walks the command tree and registers the value
// completions of every enum flag, and of --device (the adapters found).
func registerCompletions(root *cobra.Command) {
	flagValues["config"] = configNames()
	commandFlagValues["train config"] = append(configNames(), "custom")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), root.Name()), " ")
		for name, vals := range flagValues {
			if v, ok := commandFlagValues[path+" "+name]; ok {
				vals = v
			}
			if c.LocalFlags().Lookup(name) != nil && len(vals) > 0 {
				vs := vals
				c.RegisterFlagCompletionFunc(name, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) { //nolint:errcheck
					return vs, cobra.ShellCompDirectiveNoFileComp
				})
			}
		}
		if c.LocalFlags().Lookup("adapter") != nil && !strings.HasPrefix(path, "adapt ") {
			vs, ok := adapterValues[path]
			if !ok {
				vs = adapterValues[""]
			}
			c.RegisterFlagCompletionFunc("adapter", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) { //nolint:errcheck
				return vs, cobra.ShellCompDirectiveDefault // and files
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	root.RegisterFlagCompletionFunc("device", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) { //nolint:errcheck
		var out []string
		for _, a := range gpu.Adapters() {
			out = append(out, fmt.Sprintf("%d\t%s (%s, %s)", a.Index, a.Name, a.Backend, a.Type))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
}
