package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/spf13/cobra"
)

// versionInfo is what `chameleon version --json` prints; `chameleon
// --version` prints it as text.
type versionInfo struct {
	Version  string `json:"version"` // the module version, "(devel)" for a source build
	Commit   string `json:"commit"`  // VCS revision stamped by go build; "" when built without VCS information
	Time     string `json:"commit_time,omitempty"`
	Modified bool   `json:"modified"` // the tree had uncommitted changes
	Go       string `json:"go"`       // toolchain
	Platform string `json:"platform"` // GOOS/GOARCH
	WebGPU   string `json:"webgpu"`   // the Go binding's module version
	// WGPU is wgpu-native's version as the linked library reports it
	// (wgpuGetVersion); "" when it reports none (0: the library bundled
	// with cogentcore/webgpu v0.23.0 was built without a version).
	WGPU string `json:"wgpu"`
}

// stampedCommit is set by make build (-ldflags -X): the commit, with
// "-modified" when the tree had changes. The build information's
// vcs.revision, when Go stamped one, wins.
var stampedCommit string

// buildVersion reads the version from the binary's build information
// (debug.ReadBuildInfo) and wgpu-native's from the library.
func buildVersion() versionInfo {
	v := versionInfo{Version: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/cogentcore/webgpu" {
				v.WebGPU = d.Version
			}
		}
	}
	if v.Commit == "" && stampedCommit != "" {
		v.Commit, v.Modified = strings.TrimSuffix(stampedCommit, "-modified"), strings.HasSuffix(stampedCommit, "-modified")
	}
	if w := uint32(wgpu.GetVersion()); w != 0 { // wgpu-native packs major.minor.patch.build in bytes
		v.WGPU = fmt.Sprintf("%d.%d.%d.%d", w>>24, w>>16&0xff, w>>8&0xff, w&0xff)
	}
	return v
}

func (v versionInfo) String() string {
	commit := v.Commit
	switch {
	case commit == "":
		commit = "unknown (built without VCS information: make build stamps it)"
	case v.Modified:
		commit += " (modified)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chameleon %s\n", v.Version)
	fmt.Fprintf(&b, "commit    %s\n", commit)
	if v.Time != "" {
		fmt.Fprintf(&b, "built     from a commit of %s\n", v.Time)
	}
	fmt.Fprintf(&b, "go        %s %s\n", v.Go, v.Platform)
	wg := v.WGPU
	if wg == "" {
		wg = "(the bundled library reports no version)"
	}
	fmt.Fprintf(&b, "webgpu    github.com/cogentcore/webgpu %s, wgpu-native %s\n", v.WebGPU, wg)
	return b.String()
}

func versionCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from, and the WebGPU binding's and wgpu-native's versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion()
			if asJSON {
				return printJSON(os.Stdout, v)
			}
			fmt.Print(v)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (docs/cli-json.md)")
	return c
}
