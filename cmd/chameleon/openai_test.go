package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chameleon-llm/chameleon/model"
)

// openaiModules is the node_modules directory holding the official openai
// npm client: $CHAMELEON_OPENAI_NODE_MODULES (`make test` fetches it with
// npm pack into .cache/npm-openai), else that cache when it is there.
func openaiModules(t *testing.T) string {
	dir := os.Getenv("CHAMELEON_OPENAI_NODE_MODULES")
	if dir == "" {
		if abs, err := filepath.Abs("../../.cache/npm-openai/node_modules"); err == nil {
			if _, err := os.Stat(filepath.Join(abs, "openai", "package.json")); err == nil {
				dir = abs
			}
		}
	}
	if dir == "" {
		t.Skip("set CHAMELEON_OPENAI_NODE_MODULES to a node_modules with the openai package (make test does)")
	}
	if _, err := os.Stat(filepath.Join(dir, "openai", "package.json")); err != nil {
		t.Fatalf("CHAMELEON_OPENAI_NODE_MODULES=%s holds no openai package: %v", dir, err)
	}
	return dir
}

// The official openai npm client works unchanged against `chameleon
// serve`: completions and chat completions, plain and streamed (by hand
// and with the client's stream helper), usage, the extension object, and
// its error classes for a wrong key (401) and a bad request (400).
// (Over 80 lines: one server and one node script whose calls are checked in turn.)
func TestOpenAIClient(t *testing.T) {
	modules := openaiModules(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("no node on PATH: the openai client test needs it (scripts/deps.sh installs it)")
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	cfg := model.Configs["tiny"]
	if err := model.SaveHF(dir, cfg, model.RandomInit(cfg, 3), "f32"); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	addr, done := runServe(t, ctx, "--model", dir, "--cpu", "--addr", "127.0.0.1:0", "--slots", "2", "--api-key", "sk-test", "--log", "json")
	defer func() {
		stop()
		<-done
	}()

	// ES modules resolve packages from the script's directory up.
	run := t.TempDir()
	script, err := os.ReadFile("testdata/openai_client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "client.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(modules, filepath.Join(run, "node_modules")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join(run, "client.mjs"), "http://"+addr+"/v1", "sk-test")
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("the openai client: %v\n%s", err, b)
	}
	t.Logf("client: %s", b)
	type usage struct{ Prompt_tokens, Completion_tokens, Total_tokens int }
	var out struct {
		Completion struct {
			Text      string
			Usage     usage
			Chameleon *struct{ Adapted bool }
		}
		Completion_stream string
		Chat              struct {
			Object, Role, Content, Finish_reason string
			Usage                                usage
			Chameleon                            *struct {
				Adapted bool
				Reason  string
			}
		}
		Chat_stream struct {
			Content, Role, Finish_reason string
			Objects                      []string
			Usage                        *usage
		}
		Chat_stream_helper string
		Wrong_key          struct {
			Class  string
			Status int
			Code   string
		}
		Bad_request struct {
			Class, Param, Code string
			Status             int
		}
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("client output %s: %v", b, err)
	}
	if out.Completion.Text == "" || out.Completion.Usage.Completion_tokens != 4 || out.Completion.Chameleon == nil {
		t.Errorf("completion %+v", out.Completion)
	}
	if out.Completion_stream != out.Completion.Text {
		t.Errorf("streamed completion %q, plain %q", out.Completion_stream, out.Completion.Text)
	}
	c := out.Chat
	if c.Object != "chat.completion" || c.Role != "assistant" || c.Content == "" || c.Usage.Total_tokens != c.Usage.Prompt_tokens+c.Usage.Completion_tokens ||
		c.Chameleon == nil || c.Chameleon.Reason != "no_adapter" {
		t.Errorf("chat %+v", c)
	}
	s := out.Chat_stream
	if s.Content != c.Content || s.Role != "assistant" || s.Finish_reason != c.Finish_reason || strings.Join(s.Objects, ",") != "chat.completion.chunk" ||
		s.Usage == nil || *s.Usage != c.Usage {
		t.Errorf("chat stream %+v, plain %+v", s, c)
	}
	if out.Chat_stream_helper != c.Content {
		t.Errorf("stream helper %q, plain %q", out.Chat_stream_helper, c.Content)
	}
	if w := out.Wrong_key; w.Class != "AuthenticationError" || w.Status != 401 || w.Code != "invalid_api_key" {
		t.Errorf("wrong key: %+v", w)
	}
	if e := out.Bad_request; e.Class != "BadRequestError" || e.Status != 400 || e.Param != "messages" {
		t.Errorf("bad request: %+v", e)
	}
}
