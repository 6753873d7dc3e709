package serve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
	"github.com/chameleon-llm/chameleon/model/tokenizer"
)

// Options configures a Scheduler and a Server. Zero values take the
// defaults named; negative ones are refused (but Queue's NoQueue).
type Options struct {
	Slots int // sequences decoded together (KV cache slots of NCtx tokens); default 8
	// Queue is how many requests may wait for a slot; default 64. NoQueue:
	// none wait: a request is accepted only when free slots take all its
	// sequences now (else ErrQueueFull), and MaxChoices is at most Slots.
	Queue        int
	PrefillChunk int           // prompt tokens one sequence feeds per step at most; default 64
	MaxTokens    int           // limit on max_tokens; default the context
	MaxN         int           // limit on n; default 8
	MaxChoices   int           // limit on prompts x n per request; default 32
	MaxLogprobs  int           // limit on logprobs; default 5
	MaxBodyBytes int64         // request body limit; default 1 MiB
	ModelName    string        // the model's id in the API; default "chameleon"
	RetryAfter   time.Duration // Retry-After of a 429; default 1 s
	// AdaptWindow holds an adapted request in the queue until it has
	// waited this long, so that the requests arriving within the window
	// are admitted, and grouped by Model.Group, together (window
	// clustering); it delays the queue behind it too. 0: a window is
	// whatever arrived during the previous step.
	AdaptWindow time.Duration

	// The HTTP layer's options (Server only).

	// Chat renders /v1/chat/completions messages; nil: DefaultChat with
	// the tokenizer's <|endoftext|>.
	Chat *ChatTemplate
	// CORSOrigins are the origins a browser page may call from ("*": any);
	// none: no CORS headers, and a preflight gets 405.
	CORSOrigins []string
	// APIKey, when set, must come as "Authorization: Bearer KEY" on every
	// request but /health and /healthz (401 otherwise).
	APIKey string
	// Log gets one line per request; nil: none.
	Log *slog.Logger
}

// NoQueue as Options.Queue: no request waits for a slot.
const NoQueue = -1

// check refuses values that cannot be honoured.
func (o Options) check() error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"Slots", int64(o.Slots)}, {"PrefillChunk", int64(o.PrefillChunk)}, {"MaxTokens", int64(o.MaxTokens)},
		{"MaxN", int64(o.MaxN)}, {"MaxChoices", int64(o.MaxChoices)}, {"MaxLogprobs", int64(o.MaxLogprobs)},
		{"MaxBodyBytes", o.MaxBodyBytes}, {"RetryAfter", int64(o.RetryAfter)}, {"AdaptWindow", int64(o.AdaptWindow)}} {
		if f.v < 0 {
			return fmt.Errorf("serve: Options.%s is %d: want a positive value (0: the default)", f.name, f.v)
		}
	}
	if o.Queue < 0 && o.Queue != NoQueue {
		return fmt.Errorf("serve: Options.Queue is %d: want a positive value (0: the default; NoQueue: none)", o.Queue)
	}
	if slots := cmp.Or(o.Slots, 8); o.Queue == NoQueue && o.MaxChoices > slots {
		return fmt.Errorf("serve: Options.MaxChoices %d exceeds the %d slots: without a queue such a request could never be accepted", o.MaxChoices, slots)
	}
	return nil
}

func (o Options) withDefaults(cfg model.Config) Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Slots, 8)
	if o.Queue != NoQueue {
		def(&o.Queue, 64)
	}
	def(&o.PrefillChunk, 64)
	def(&o.MaxTokens, cfg.NCtx)
	def(&o.MaxN, 8)
	def(&o.MaxChoices, 32)
	def(&o.MaxLogprobs, 5)
	if o.Queue == NoQueue {
		o.MaxChoices = min(o.MaxChoices, o.Slots)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.ModelName == "" {
		o.ModelName = "chameleon"
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	return o
}

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
}

// runState is the scheduler's bookkeeping of a run (loop goroutine only,
// except admitted, which is also read under mu).
type runState struct {
	submitted time.Time
	admitted  int // choices given a slot so far
	finished  int // choices done
	first     bool
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
	if met == nil {
		met = newMetrics(nil)
	}
	s := &Scheduler{
		m: m, tok: tok, opt: opt, met: met,
		kick:  make(chan struct{}, 1),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
		cache: cache,
		slots: make([]*seq, opt.Slots),
	}
	met.bind(s)
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
}

// Stats returns the current load.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	q := len(s.queue)
	s.mu.Unlock()
	return Stats{Queued: q, Running: int(s.running.Load()), Steps: s.steps.Load()}
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
	for {
		select {
		case <-s.abort:
			s.failAll(unavailable("shutting down: the deadline passed"))
			return
		default:
		}
		s.sweep()
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
				select {
				case <-s.kick:
				case <-s.abort:
				}
			} else if wait > 0 { // the queue's head waits for its window to close
				tm := time.NewTimer(wait)
				select {
				case <-s.kick:
				case <-s.abort:
				case <-tm.C:
				}
				tm.Stop()
			}
			continue
		}
		s.step()
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

// admit puts waiting sequences into free slots, in queue order, and then
// has the model group those admitted with adaptation on (the window). An
// adapted run younger than Options.AdaptWindow is held back with the queue
// behind it: admit then returns how long until it may go.
func (s *Scheduler) admit() time.Duration {
	var fresh []int // slots admitted now with adaptation on
	defer func() { s.group(fresh) }()
	// The window of this round: once the oldest held run's window has
	// closed, every adapted run submitted before that moment joins it (each
	// run's own age would split requests sent together into rounds a few
	// milliseconds apart).
	var windowEnd time.Time
	for b := range s.slots {
		if s.slots[b] != nil {
			continue
		}
		s.mu.Lock()
		if len(s.queue) == 0 || s.lost != nil {
			s.mu.Unlock()
			return 0
		}
		r := s.queue[0]
		if r.task.Adapter.On && r.state.admitted == 0 && (windowEnd.IsZero() || r.state.submitted.After(windowEnd)) {
			if w := s.opt.AdaptWindow - time.Since(r.state.submitted); w > 0 {
				s.mu.Unlock()
				return w
			}
			windowEnd = r.state.submitted.Add(s.opt.AdaptWindow)
		}
		k := r.state.admitted
		r.state.admitted++
		if r.state.admitted == len(r.task.Prompts)*r.task.N {
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		s.running.Add(1) // under mu with admitted: freeSlots sees both or neither
		s.mu.Unlock()
		t := r.task
		p := t.Sample
		if !(p.Temperature > 0) || p.TopK == 1 {
			p = gpu.SampleParams{} // every greedy row samples in one group
		}
		s.slots[b] = &seq{
			run: r, index: k, prompt: t.Prompts[k/t.N], params: p,
			rng:   rand.New(rand.NewPCG(t.Seed+uint64(k), 0x5eed)), // as model.Generate seeds its sequences
			text:  model.NewStopText(t.Stop),
			adapt: Adapter{On: t.Adapter.On, Cluster: -1},
		}
		s.cache.Len[b] = 0
		if t.Adapter.On {
			fresh = append(fresh, b)
			s.met.sequences.WithLabelValues("adapted").Inc()
		} else {
			s.met.sequences.WithLabelValues("base").Inc()
		}
	}
	return 0
}

// group asks the model for the clusters of the sequences just admitted
// into slots fresh. If it fails, their runs fail (a lost device fails
// everything, as a step does).
func (s *Scheduler) group(fresh []int) {
	if len(fresh) == 0 {
		return
	}
	t0 := time.Now()
	isFresh := make([]bool, len(s.slots))
	prompts := make([][]int32, len(fresh))
	for i, b := range fresh {
		isFresh[b], prompts[i] = true, s.slots[b].prompt
	}
	var live []int
	for b, q := range s.slots {
		if q != nil && !isFresh[b] && q.adapt.On && q.adapt.Cluster >= 0 {
			live = append(live, q.adapt.Cluster)
		}
	}
	cl, err := s.callGroup(prompts, live)
	if err == nil && len(cl) != len(fresh) {
		err = fmt.Errorf("serve: internal error: the model grouped %d sequences into %d clusters", len(fresh), len(cl))
	}
	if err != nil {
		if errors.Is(err, gpu.ErrDeviceLost) {
			s.stepFailed(err)
			return
		}
		s.met.failed.Inc()
		for _, b := range fresh {
			if q := s.slots[b]; q != nil {
				q.run.end(fmt.Errorf("serve: grouping for adaptation: %w", err))
				s.free(b)
			}
		}
		return
	}
	for i, b := range fresh {
		s.slots[b].adapt.Cluster = cl[i]
	}
	s.met.group.Observe(time.Since(t0).Seconds())
}

// callGroup is Model.Group with a programmer error's panic recovered.
func (s *Scheduler) callGroup(prompts [][]int32, live []int) (cl []int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serve: internal error: %v", r)
		}
	}()
	return s.m.Group(prompts, live)
}

// free empties slot b.
func (s *Scheduler) free(b int) {
	if s.slots[b] != nil {
		s.slots[b] = nil
		s.cache.Len[b] = 0
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

// step runs one forward over every slot and samples the sequences whose
// prompt is in.
func (s *Scheduler) step() {
	t0 := time.Now()
	B := len(s.slots)
	tokens := make([][]int32, B)
	adapt := make([]Adapter, B)
	var sampling []int // slots that sample after this step
	for b, q := range s.slots {
		if q == nil {
			continue
		}
		adapt[b] = q.adapt
		if q.fed < len(q.prompt) {
			n := min(s.opt.PrefillChunk, len(q.prompt)-q.fed)
			tokens[b] = q.prompt[q.fed : q.fed+n]
			if q.fed+n < len(q.prompt) {
				continue
			}
		} else {
			tokens[b] = []int32{q.next}
		}
		sampling = append(sampling, b)
	}
	s.met.batch.Set(float64(s.running.Load()))
	ncl := clustersIn(s.slots)
	s.met.clusters.Set(float64(ncl))
	s.met.clustersHist.Observe(float64(ncl))
	ids, lps, err := s.forward(tokens, adapt, sampling)
	s.steps.Add(1)
	s.met.step.Observe(time.Since(t0).Seconds())
	if err != nil {
		s.stepFailed(err)
		return
	}
	for b, q := range s.slots {
		if q != nil && q.fed < len(q.prompt) {
			q.fed += len(tokens[b])
		}
	}
	for i, b := range sampling {
		s.accept(b, ids[i], lps[i])
	}
	s.rate.add(len(sampling), s.met)
}

// clustersIn counts the distinct adaptations among the running sequences
// (unadapted ones, and adapted ones without a cluster, count as one): 1
// for the base model.
func clustersIn(slots []*seq) int {
	seen := map[Adapter]bool{}
	for _, q := range slots {
		if q != nil {
			a := q.adapt
			if !a.On || a.Cluster < 0 {
				a = Adapter{}
			}
			seen[a] = true
		}
	}
	return max(1, len(seen))
}

// forward runs the model and samples the rows of sampling; a programmer
// error's panic is recovered into an error here.
func (s *Scheduler) forward(tokens [][]int32, adapt []Adapter, sampling []int) (ids []int32, lps [][]float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serve: internal error: %v", r)
		}
	}()
	logits, err := s.m.ForwardLast(s.cache, tokens, adapt)
	if err != nil {
		return nil, nil, err
	}
	defer s.m.Backend().Free(logits)
	return s.sample(logits, sampling)
}

// stepFailed fails the running sequences; a lost device fails everything
// and makes the scheduler refuse further work.
func (s *Scheduler) stepFailed(err error) {
	if errors.Is(err, gpu.ErrDeviceLost) {
		lost := fmt.Errorf("%w: %w", ErrUnavailable, err)
		s.mu.Lock()
		s.lost = lost
		s.mu.Unlock()
		s.met.healthy.Set(0)
		s.failAll(lost)
		return
	}
	s.met.failed.Inc()
	for b, q := range s.slots {
		if q != nil {
			q.run.end(fmt.Errorf("serve: step failed: %w", err))
			s.free(b)
		}
	}
}

// accept takes slot b's sampled token id (with the step's log-softmax row
// lp when the run asked for logprobs).
func (s *Scheduler) accept(b int, id int32, lp []float32) {
	q := s.slots[b]
	r := q.run
	if !r.state.first {
		r.state.first = true
		s.met.ttft.Observe(time.Since(r.state.submitted).Seconds())
	}
	if id == s.tok.EOT() {
		s.finish(b, "stop")
		return
	}
	q.ntok++
	if lp != nil {
		info := TokenInfo{ID: id, Offset: len(q.text.Text()), Logprob: lp[id]}
		info.Top = topLogprobs(lp, r.task.Logprobs)
		q.infos = append(q.infos, info)
	}
	var piece []byte
	if int(id) < s.tok.VocabSize() { // a model vocabulary may exceed the tokenizer's
		piece = s.tok.TokenBytes(id)
	}
	switch {
	case q.text.Add(piece):
		s.finish(b, "stop")
	case q.ntok >= r.task.MaxTokens, s.cache.Len[b] >= s.cache.Tmax:
		s.finish(b, "length")
	default:
		q.next = id
		if ev := s.event(q, false); len(ev.Text) > 0 {
			r.push(ev)
		}
	}
}

// event releases what it can of q's text as an event.
func (s *Scheduler) event(q *seq, final bool) Event {
	from, to := q.text.Release(final)
	ev := Event{Index: q.index, Text: q.text.Text()[from:to:to], Adapter: q.adapt}
	if q.infos != nil {
		i, j := q.text.TokensIn(from, to)
		ev.Tokens = q.infos[i:j:j]
	}
	return ev
}

// finish ends slot b's sequence and frees its slot.
func (s *Scheduler) finish(b int, reason string) {
	q := s.slots[b]
	ev := s.event(q, true)
	ev.Finish, ev.CompletionTokens = reason, q.ntok
	q.run.push(ev)
	s.met.completionTokens.Add(float64(q.ntok))
	s.free(b)
	r := q.run
	r.state.finished++
	if r.state.finished == len(r.task.Prompts)*r.task.N {
		r.end(io.EOF)
	}
}

// rateWindow measures generated tokens per second over windows of about a
// second, for the tokens/s gauge.
type rateWindow struct {
	start  time.Time
	tokens int
}

func (w *rateWindow) add(n int, m *metrics) {
	now := time.Now()
	if w.start.IsZero() {
		w.start = now
	}
	w.tokens += n
	m.tokens.Add(float64(n))
	if el := now.Sub(w.start); el >= time.Second {
		m.tokensPerSec.Set(float64(w.tokens) / el.Seconds())
		w.start, w.tokens = now, 0
	}
}

func (w *rateWindow) idle(m *metrics) {
	m.tokensPerSec.Set(0)
	m.batch.Set(0)
	w.start, w.tokens = time.Time{}, 0
}
