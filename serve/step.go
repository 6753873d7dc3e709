package serve

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
)

// step runs one forward over every slot and samples the sequences whose
// prompt is in.
func (s *Scheduler) step() {
	t0 := time.Now()
	B := len(s.slots)
	tokens := make([][]int32, B)
	adapt := make([]Adapter, B)
	var sampling []int // slots that sample after this step
	for b, q := range s.slots {
		if q == nil || q.cacheWait {
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
	s.takeDecided()
	for i, b := range sampling {
		if s.slots[b] != nil { // not failed by its assignment
			s.accept(b, ids[i], lps[i])
		}
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
	var logits gpu.Tensor
	if s.tc != nil && s.tc.nc != nil {
		logits, err = s.tc.nm.ForwardLastHidden(s.cache, tokens, adapt, s.tc.nc.hidT)
	} else {
		logits, err = s.m.ForwardLast(s.cache, tokens, adapt)
	}
	if err != nil {
		return nil, nil, err
	}
	defer s.m.Backend().Free(logits)
	if s.tc != nil {
		mixed, err := s.tc.mix(logits, tokens)
		if err != nil {
			return nil, nil, err
		}
		defer s.m.Backend().Free(mixed)
		logits = mixed
	}
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
	ev := Event{Index: q.index, Text: q.text.Text()[from:to:to], Adapter: q.adapt, Cache: q.cache}
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
