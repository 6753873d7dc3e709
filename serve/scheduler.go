package serve

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chameleon-llm/chameleon/adapt"
	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// Scheduler runs tasks on a Model with continuous batching (see the
// package doc). Submit, Stats and Shutdown may be called from any
// goroutine.
type Scheduler struct {
	m   Model
	tok *tokenizer.Tokenizer
	opt Options
	met *metrics

	mu       sync.Mutex
	queue    []*Run // waiting (the head may be partly admitted), FIFO
	draining bool   // Shutdown was called: Submit refuses
	lost     error  // the device was lost: Submit refuses
	kick     chan struct{}
	abort    chan struct{} // closed when Shutdown's deadline passes
	done     chan struct{} // closed when the loop has exited
	shutOnce sync.Once

	running atomic.Int32 // sequences in slots
	steps   atomic.Int64 // forward steps run

	// Owned by the loop goroutine.
	cache *model.Cache
	tc    *tokenCache // Options.Cache: the token cache (nil: off)
	slots []*seq
	rate  rateWindow
}

// seq is one sequence (a choice of a run) in a slot.
type seq struct {
	run    *Run
	index  int     // choice index in the run
	prompt []int32 // its prompt
	fed    int     // prompt tokens in the cache
	next   int32   // the last sampled token, fed at the next step
	rng    *rand.Rand
	params gpu.SampleParams // normalised: greedy is the zero value
	text   *model.StopText
	infos  []TokenInfo // with logprobs: one per generated token
	ntok   int         // generated tokens (<|endoftext|> not counted)
	adapt  Adapter     // its adaptation: On from the task, Cluster from Model.Group
	cache  *CacheInfo  // its token cache's snapshot (nil: off)
	// cacheWait: its prompt's admission to the cache memory is not done
	// yet (cache_admit.go); it sits out the steps until then.
	cacheWait bool
}

// runState is the scheduler's bookkeeping of a run (loop goroutine only,
// except admitted, which is also read under mu).
type runState struct {
	submitted time.Time
	admitted  int // choices given a slot so far
	finished  int // choices done
	first     bool
	snaps     map[int]*cacheSnap // Options.Cache: per prompt, its admission to the memory
	pending   map[int]bool       // Options.Cache: prompts whose admission the admitter has in hand
}

// NewScheduler allocates the cache and starts the loop goroutine.
func NewScheduler(m Model, tok *tokenizer.Tokenizer, opt Options) (*Scheduler, error) {
	return newScheduler(m, tok, opt, nil)
}

func newScheduler(m Model, tok *tokenizer.Tokenizer, opt Options, met *metrics) (*Scheduler, error) {
	cfg := m.Config()
	if err := opt.check(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults(cfg)
	if w, ok := m.Backend().(*gpu.WebGPU); ok {
		// A request's output must not depend on what it is batched with;
		// on a GPU the small-batch kernels would break that.
		w.BatchInvariant = true
	}
	cache, err := m.NewCache(opt.Slots, cfg.NCtx)
	if err != nil {
		return nil, fmt.Errorf("serve: KV cache of %d slots x %d tokens: %w (use fewer --slots)", opt.Slots, cfg.NCtx, err)
	}
	var tc *tokenCache
	if opt.Cache {
		if tc, err = newTokenCache(m, opt); err != nil {
			m.FreeCache(cache)
			return nil, err
		}
	}
	if met == nil {
		met = newMetrics(nil)
	}
	s := &Scheduler{
		m: m, tok: tok, opt: opt, met: met,
		kick:  make(chan struct{}, 1),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
		cache: cache,
		tc:    tc,
		slots: make([]*seq, opt.Slots),
	}
	met.bind(s)
	if tc != nil {
		tc.adm.kick = s.wake
	}
	go s.loop()
	return s, nil
}

// Options returns the options in effect (defaults filled in).
func (s *Scheduler) Options() Options { return s.opt }

// Stats is a snapshot of the scheduler's load.
type Stats struct {
	Queued  int   // requests waiting (a partly admitted one included)
	Running int   // sequences in slots
	Steps   int64 // forward steps run so far
	// Memory is the token cache memory's size (nil: Options.Cache off).
	Memory *adapt.MemoryStats
}

// Stats returns the current load.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	q := len(s.queue)
	s.mu.Unlock()
	st := Stats{Queued: q, Running: int(s.running.Load()), Steps: s.steps.Load()}
	if ms, ok := s.MemoryStats(); ok {
		st.Memory = &ms
	}
	return st
}

// Health is nil while the scheduler serves; else why not (the device was
// lost, or it is shutting down).
func (s *Scheduler) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.lost != nil:
		return s.lost
	case s.draining:
		return unavailable("shutting down")
	}
	return nil
}

// Submit queues t. It fails at once with ErrQueueFull when the queue is
// full, and with an ErrUnavailable error after a device loss or during
// shutdown. Cancelling ctx abandons the run: its slots are freed at the
// next step. t must be valid (the Server validates requests).
func (s *Scheduler) Submit(ctx context.Context, t *Task) (*Run, error) {
	if len(t.Prompts) == 0 || t.N < 1 || t.MaxTokens < 1 {
		return nil, fmt.Errorf("serve: invalid task: %d prompts, n %d, max tokens %d", len(t.Prompts), t.N, t.MaxTokens)
	}
	for i, p := range t.Prompts {
		if len(p) == 0 || len(p)+t.MaxTokens > s.m.Config().NCtx {
			return nil, fmt.Errorf("serve: invalid task: prompt %d has %d tokens, + %d new exceeds the context of %d", i, len(p), t.MaxTokens, s.m.Config().NCtx)
		}
	}
	if t.Adapter.On && !s.m.Adapts() {
		return nil, fmt.Errorf("serve: this model does not adapt")
	}
	r := newRun(ctx, t)
	r.state.submitted = time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.lost != nil:
		return nil, s.lost
	case s.draining:
		return nil, unavailable("shutting down")
	case s.opt.Queue == NoQueue:
		if free := s.freeSlots(); len(t.Prompts)*t.N > free {
			s.met.rejected.Inc()
			return nil, fmt.Errorf("%w: %d of %d slots free, %d needed, and no queue", ErrQueueFull, free, s.opt.Slots, len(t.Prompts)*t.N)
		}
	case len(s.queue) >= s.opt.Queue:
		s.met.rejected.Inc()
		return nil, ErrQueueFull
	}
	r.stop = context.AfterFunc(ctx, s.wake)
	s.queue = append(s.queue, r)
	s.wake()
	return r, nil
}

// freeSlots is the number of slots neither running nor promised to an
// accepted request. s.mu held.
func (s *Scheduler) freeSlots() int {
	n := s.opt.Slots - int(s.running.Load())
	for _, r := range s.queue {
		n -= len(r.task.Prompts)*r.task.N - r.state.admitted
	}
	return n
}

func (s *Scheduler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Shutdown stops accepting tasks and lets queued and running ones finish;
// when ctx ends first, what is left fails with ErrUnavailable. It then
// frees the cache. Calling it again waits for the first call's end.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.wake()
	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		s.shutOnce.Do(func() { close(s.abort) })
		<-s.done
		err = fmt.Errorf("serve: shutdown deadline: unfinished requests failed: %w", ctx.Err())
	}
	return err
}

// loop is the scheduler goroutine: admit, step, repeat.
func (s *Scheduler) loop() {
	defer close(s.done)
	defer s.m.FreeCache(s.cache)
	if s.tc != nil {
		defer s.tc.free()
	}
	for {
		select {
		case <-s.abort:
			s.failAll(unavailable("shutting down: the deadline passed"))
			return
		default:
		}
		s.sweep()
		s.cacheDeliver()
		wait := s.admit()
		if s.running.Load() == 0 {
			s.mu.Lock()
			idle, draining := len(s.queue) == 0, s.draining
			s.mu.Unlock()
			if idle && draining {
				return
			}
			if idle || s.lost != nil {
				s.rate.idle(s.met)
				s.pause(0)
			} else if wait > 0 { // the queue's head waits for its window to close
				s.pause(wait)
			}
			continue
		}
		if !s.stepReady() { // every running slot waits for its cache snapshot
			s.pause(wait)
			continue
		}
		s.step()
	}
}

// pause waits for a kick or the abort, and at most d when d > 0.
func (s *Scheduler) pause(d time.Duration) {
	var timeout <-chan time.Time
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case <-s.kick:
	case <-s.abort:
	case <-timeout:
	}
}

// sweep drops cancelled runs from the queue and frees their slots.
func (s *Scheduler) sweep() {
	s.mu.Lock()
	q := s.queue[:0]
	for _, r := range s.queue {
		if err := r.ctx.Err(); err != nil {
			if r.endOnce(err) {
				s.met.cancelled.Inc()
			}
			continue
		}
		if r.ended() { // failed while partly admitted
			continue
		}
		q = append(q, r)
	}
	clear(s.queue[len(q):])
	s.queue = q
	s.mu.Unlock()
	for b, q := range s.slots {
		if q == nil {
			continue
		}
		if err := q.run.ctx.Err(); err != nil {
			if q.run.endOnce(err) {
				s.met.cancelled.Inc()
			}
			s.free(b)
		} else if q.run.ended() {
			s.free(b)
		}
	}
}

// free empties slot b.
func (s *Scheduler) free(b int) {
	if s.slots[b] != nil {
		s.slots[b] = nil
		s.cache.Len[b] = 0
		if s.tc != nil {
			s.tc.on[b] = false
		}
		s.running.Add(-1)
	}
}

// failAll ends every running and queued run with err.
func (s *Scheduler) failAll(err error) {
	for b, q := range s.slots {
		if q != nil {
			q.run.end(err)
			s.free(b)
		}
	}
	s.mu.Lock()
	for _, r := range s.queue {
		r.end(err)
	}
	s.queue = nil
	s.mu.Unlock()
}
