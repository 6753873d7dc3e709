package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/chameleon-llm/chameleon/gpu"
)

// Task is one request for the scheduler: every prompt continued N times.
// Sequence (choice) k = prompt k/N, copy k%N.
type Task struct {
	Prompts   [][]int32        // token ids, none empty, each + MaxTokens within the context
	N         int              // continuations per prompt (>= 1)
	MaxTokens int              // new tokens per sequence at most (>= 1)
	Sample    gpu.SampleParams // Temperature <= 0: greedy
	Seed      uint64           // choice k draws from an RNG seeded Seed+k
	Stop      []string         // a sequence ends before the first of these
	Logprobs  int              // < 0: none; else the sampled token's logprob and this many top ones
	Adapter   Adapter          // adaptation of every sequence of the task
	// NoCache keeps the task out of the token cache memory (Options.Cache):
	// served without the cache, its prompts join no pool.
	NoCache bool
}

// Event is what the scheduler reports about one sequence (choice).
type Event struct {
	Index  int         // choice index
	Text   []byte      // newly released text (may be empty)
	Tokens []TokenInfo // with logprobs: the generated tokens whose text starts in Text
	Finish string      // on the choice's last event: "stop" or "length"
	// CompletionTokens, on the last event, counts the tokens the choice
	// generated (those of a stop string included, <|endoftext|> not).
	CompletionTokens int
	// Adapter is the sequence's adaptation: On as asked, Cluster as
	// grouped at admission (-1: the base model's logits).
	Adapter Adapter
	// Cache is the sequence's token cache snapshot (nil: Options.Cache off).
	Cache *CacheInfo
}

// TokenInfo is one generated token with its log-probabilities.
type TokenInfo struct {
	ID      int32
	Offset  int     // byte offset of its text in the choice's generated text
	Logprob float32 // log p(token) under the model (temperature 1, before top-k/top-p)
	Top     []TopLogprob
}

// TopLogprob is one of the most likely tokens at a step.
type TopLogprob struct {
	ID      int32
	Logprob float32
}

// Errors of Submit and of a Run.
var (
	// ErrQueueFull: the queue is at its bound; retry later (HTTP 429).
	ErrQueueFull = errors.New("serve: the request queue is full")
	// ErrUnavailable wraps every failure that means "not now, not here":
	// shutting down, or the GPU device was lost (HTTP 503).
	ErrUnavailable = errors.New("serve: unavailable")
)

// Run is a submitted task: its events arrive in order through Next.
type Run struct {
	PromptTokens int // tokens of all prompts

	task   *Task
	ctx    context.Context
	state  runState    // the scheduler's bookkeeping
	stop   func() bool // unregisters the cancellation hook
	mu     sync.Mutex
	events []Event
	err    error // terminal: io.EOF when finished
	wake   chan struct{}
}

func newRun(ctx context.Context, t *Task) *Run {
	r := &Run{task: t, ctx: ctx, wake: make(chan struct{}, 1)}
	for _, p := range t.Prompts {
		r.PromptTokens += len(p)
	}
	return r
}

// push appends events; it never blocks.
func (r *Run) push(ev ...Event) {
	r.mu.Lock()
	if r.err == nil {
		r.events = append(r.events, ev...)
	}
	r.mu.Unlock()
	r.signal()
}

// end records the terminal state (io.EOF: finished); later ends are ignored.
func (r *Run) end(err error) { r.endOnce(err) }

// endOnce is end, reporting whether this call ended the run.
func (r *Run) endOnce(err error) bool {
	r.mu.Lock()
	first := r.err == nil
	if first {
		r.err = err
	}
	r.mu.Unlock()
	if first && r.stop != nil {
		r.stop()
	}
	r.signal()
	return first
}

// ended reports whether the run has its terminal state.
func (r *Run) ended() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err != nil
}

func (r *Run) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Next waits for events and returns those pending. After the last event it
// returns io.EOF; a failed run returns its error (wrapping ErrUnavailable
// for a lost device or a shutdown); a done ctx returns ctx.Err().
func (r *Run) Next(ctx context.Context) ([]Event, error) {
	for {
		r.mu.Lock()
		ev, err := r.events, r.err
		r.events = nil
		r.mu.Unlock()
		if len(ev) > 0 {
			return ev, nil
		}
		if err != nil {
			return nil, err
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Wait collects every event until the run ends; it returns the events
// and nil, or the run's error.
func (r *Run) Wait(ctx context.Context) ([]Event, error) {
	var all []Event
	for {
		ev, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return all, nil
		}
		if err != nil {
			return all, err
		}
		all = append(all, ev...)
	}
}

// unavailable wraps err as ErrUnavailable.
func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, fmt.Sprintf(format, args...))
}
