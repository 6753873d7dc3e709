package serve

import (
	"fmt"
	"sync"

	"github.com/chameleon-llm/chameleon/adapt"
)

// The memory's host half of an admission (Options.Cache) runs off the
// scheduler goroutine. Choosing a pool's weights with the admitted prompt
// (adapt.CacheMemory.AdmitHidden) takes 0.1-0.3 s on a 2-core machine for
// a full neural pool; on the loop it stalled every other slot's steps for
// that long. Now the loop does the device half (the prompts' losses,
// hidden states and memory keys), hands the rest to one admitter
// goroutine, which admits in arrival order (so the memory sees the same
// sequence of prompts as before, and every snapshot is the same), and
// holds the waiting slots out of the steps until it installs their
// snapshots; the other slots go on stepping.

// snapKey names one prompt of a run: what a snapshot is shared by.
type snapKey struct {
	run *Run
	pi  int // prompt index
}

// admitJob is one admission round's host half: per prompt its key, its
// tokens and what the device half gave.
type admitJob struct {
	keys    []snapKey
	prompts [][]int32
	trained []int
	feats   [][]float32
	lps     [][]float32
	hids    [][]float32
}

// admitDone is one prompt's admission: its snapshot or the error.
type admitDone struct {
	key snapKey
	c   *cacheSnap
	err error
}

// admitter runs admission jobs in order on its own goroutine.
type admitter struct {
	mem    *adapt.CacheMemory
	kick   func() // wakes the scheduler loop when results are in
	mu     sync.Mutex
	hook   func() // if set (tests), runs before each prompt's admission
	cond   *sync.Cond
	queue  []admitJob
	done   []admitDone
	closed bool
	exited sync.WaitGroup
}

func newAdmitter(mem *adapt.CacheMemory) *admitter {
	a := &admitter{mem: mem, kick: func() {}}
	a.cond = sync.NewCond(&a.mu)
	a.exited.Add(1)
	go a.run()
	return a
}

// submit queues a job; it never blocks.
func (a *admitter) submit(j admitJob) {
	a.mu.Lock()
	a.queue = append(a.queue, j)
	a.mu.Unlock()
	a.cond.Signal()
}

// take returns the admissions finished since the last take.
func (a *admitter) take() []admitDone {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.done
	a.done = nil
	return d
}

// close stops the goroutine after the job in hand; queued jobs are
// dropped (the scheduler is gone).
func (a *admitter) close() {
	a.mu.Lock()
	a.closed = true
	a.queue = nil
	a.mu.Unlock()
	a.cond.Broadcast()
	a.exited.Wait()
}

func (a *admitter) run() {
	defer a.exited.Done()
	for {
		a.mu.Lock()
		for len(a.queue) == 0 && !a.closed {
			a.cond.Wait()
		}
		if a.closed {
			a.mu.Unlock()
			return
		}
		j, hook := a.queue[0], a.hook
		a.queue = a.queue[1:]
		a.mu.Unlock()
		out := make([]admitDone, len(j.keys))
		for i := range j.keys {
			if hook != nil {
				hook()
			}
			out[i] = admitDone{key: j.keys[i]}
			out[i].c, out[i].err = a.admit(j, i)
		}
		a.mu.Lock()
		a.done = append(a.done, out...)
		a.mu.Unlock()
		a.kick()
	}
}

// admit admits prompt i of j; a programmer error's panic is recovered
// into an error.
func (a *admitter) admit(j admitJob, i int) (c *cacheSnap, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serve: internal error: %v", r)
		}
	}()
	snap, err := a.mem.AdmitHidden(j.trained[i], j.feats[i], j.prompts[i], j.lps[i], j.hids[i])
	if err != nil {
		return nil, err
	}
	w := snap.Weights
	info := &CacheInfo{Pool: snap.Key.String(), PoolPrompts: snap.Prompts, Own: w.Own, PoolWeight: w.Pool,
		NeuralOwn: w.NeuralOwn, NeuralPool: w.NeuralPool, Theta: w.Theta}
	if snap.Keys != nil {
		info.PoolKeys = snap.Keys.Len()
	}
	return &cacheSnap{snap: snap, info: info, hid: j.hids[i]}, nil
}

// cacheDeliver installs the snapshots the admitter finished into the
// slots waiting for them (a slot whose sequence ended meanwhile was freed
// and waits for nothing); an admission's error ends its runs.
func (s *Scheduler) cacheDeliver() {
	if s.tc == nil {
		return
	}
	for _, d := range s.tc.adm.take() {
		st := &d.key.run.state
		delete(st.pending, d.key.pi)
		if d.err == nil {
			st.snaps[d.key.pi] = d.c
		} else {
			s.met.failed.Inc()
		}
		for b, q := range s.slots {
			if q == nil || !q.cacheWait || q.run != d.key.run || q.index/q.run.task.N != d.key.pi {
				continue
			}
			q.cacheWait = false
			if d.err != nil {
				q.run.end(fmt.Errorf("serve: token cache: %w", d.err))
				s.free(b)
				continue
			}
			s.cacheInstall(b, q, d.c)
		}
	}
}

// cacheInstall gives slot b its snapshot c.
func (s *Scheduler) cacheInstall(b int, q *seq, c *cacheSnap) {
	q.cache = c.info
	if err := s.tc.install(b, q.prompt, c); err != nil {
		q.run.end(err)
		s.free(b)
	}
}

// stepReady says whether a slot can step: running and not waiting for
// its cache snapshot.
func (s *Scheduler) stepReady() bool {
	for _, q := range s.slots {
		if q != nil && !q.cacheWait {
			return true
		}
	}
	return false
}
