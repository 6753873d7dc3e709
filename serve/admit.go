package serve

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/chameleon-llm/chameleon/gpu"
	"github.com/chameleon-llm/chameleon/model"
)

// admit puts waiting sequences into free slots, in queue order, and then
// has the model group those admitted with adaptation on (the window). An
// adapted run younger than Options.AdaptWindow is held back with the queue
// behind it: admit then returns how long until it may go.
func (s *Scheduler) admit() time.Duration {
	var fresh, all []int // slots admitted now with adaptation on, and all of them
	defer func() {
		s.group(fresh)
		s.cacheAdmit(all)
	}()
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
		all = append(all, b)
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
	for _, b := range fresh {
		isFresh[b] = true
	}
	fresh = s.groupInPrefill(fresh)
	if len(fresh) == 0 {
		return
	}
	prompts := make([][]int32, len(fresh))
	for i, b := range fresh {
		prompts[i] = s.slots[b].prompt
	}
	var live []int
	for b, q := range s.slots {
		if q != nil && !isFresh[b] && q.adapt.On && q.adapt.Cluster >= 0 { // pending slots hold no cluster yet
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

// groupInPrefill leaves to their own prefill the fresh slots whose
// prompts the model can assign there (prefillGrouper; not with the token
// cache, whose admission needs each prompt's cluster and losses now): they
// get Cluster ClusterPending. It returns the slots left for Group.
func (s *Scheduler) groupInPrefill(fresh []int) []int {
	pg, ok := s.m.(prefillGrouper)
	if !ok || s.tc != nil || s.opt.GroupApart {
		return fresh
	}
	var rest []int
	for _, b := range fresh {
		if pg.GroupInPrefill(b, s.slots[b].prompt) {
			s.slots[b].adapt.Cluster = ClusterPending
		} else {
			rest = append(rest, b)
		}
	}
	return rest
}

// takeDecided gives the pending slots the clusters the last forward
// decided; a slot whose assignment failed ends its run with the error.
func (s *Scheduler) takeDecided() {
	pg, ok := s.m.(prefillGrouper)
	if !ok {
		return
	}
	decided, failed := pg.TakeDecided()
	for b, c := range decided {
		if q := s.slots[b]; q != nil && q.adapt.Cluster == ClusterPending {
			q.adapt.Cluster = c
		}
	}
	for b, err := range failed {
		if q := s.slots[b]; q != nil && q.adapt.Cluster == ClusterPending {
			s.met.failed.Inc()
			q.run.end(fmt.Errorf("serve: grouping for adaptation: %w", err))
			s.free(b)
		}
	}
}
