package data

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"sync"
)

// domainResult is what buildDomain selected.
type domainResult struct {
	docs  map[string][]Doc
	stats DomainStats
}

// buildDomain lists a domain's candidates, visits them in a seeded
// pseudo-random order (loading a window of them in parallel), cleans,
// filters and de-duplicates them (seen holds the SHA-256 of every text kept
// so far, across domains; an adapt or heldout domain also drops near-
// duplicates of its own kept documents), and fills each split up to its cap.
func (o *Options) buildDomain(domain string, seen map[[32]byte]bool) (*domainResult, []SourceInfo, error) {
	cands, info, err := o.candidates(domain)
	if err != nil {
		return nil, nil, err
	}
	o.order(domain, cands)
	spec := o.specOf(domain)
	caps := spec.caps()
	nearDedupe := DomainRole(domain) != RolePretrain
	kept := map[uint64]bool{} // sampled shingles of the kept documents (nearDedupe only)
	var sh []uint64
	res := &domainResult{docs: map[string][]Doc{}}
	res.stats.Domain = domain
	res.stats.Role = DomainRole(domain)
	res.stats.Candidates = len(cands)
	bytes := map[string]int64{}
	full := func(split string) bool { return caps[split] >= 0 && bytes[split] >= caps[split] }
	window := o.Workers * 16
	texts := make([]string, window)
	errs := make([]error, window)
	for start := 0; start < len(cands); start += window {
		if full(SplitTrain) && full(SplitValidation) && full(SplitTest) {
			res.stats.Capped += len(cands) - start
			break
		}
		batch := cands[start:min(start+window, len(cands))]
		o.load(batch, texts, errs)
		for i, c := range batch {
			if errs[i] != nil {
				return nil, nil, fmt.Errorf("data: %s: %s: %w", domain, c.id, errs[i])
			}
			text := texts[i]
			if substantive(text) < o.MinDocChars {
				res.stats.Empty++
				continue
			}
			h := sha256.Sum256([]byte(text))
			if seen[h] {
				res.stats.Duplicates++
				continue
			}
			seen[h] = true
			split := SplitOf(o.Seed, domain, c.id, spec.validation, spec.test)
			if full(split) {
				res.stats.Capped++
				continue
			}
			if nearDedupe {
				sh = Shingles(sh, text)
				n := 0
				for _, x := range sh {
					if kept[x] {
						n++
					}
				}
				if len(sh) > 0 && float64(n) >= o.WithinDomainShared*float64(len(sh)) {
					res.stats.NearDups++
					continue
				}
				for _, x := range sh {
					kept[x] = true
				}
			}
			pieces := chunk(text, o.MaxDocBytes)
			for k, p := range pieces {
				if full(split) {
					break
				}
				id := c.id
				if len(pieces) > 1 {
					id = fmt.Sprintf("%s#%d", c.id, k+1)
				}
				res.docs[split] = append(res.docs[split], Doc{ID: id, Domain: domain, Text: p})
				bytes[split] += int64(len(p))
			}
			res.stats.Kept++
		}
	}
	return res, info, nil
}

// order sorts a domain's candidates into the order they are visited: by
// tier, then by a seeded hash of the id (ties by id).
func (o *Options) order(domain string, cands []candidate) {
	seed := fmt.Sprint(o.Seed)
	keys := make(map[string]uint64, len(cands))
	for _, c := range cands {
		keys[c.id] = hash64("order", seed, domain, c.id)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].tier != cands[j].tier {
			return cands[i].tier < cands[j].tier
		}
		ki, kj := keys[cands[i].id], keys[cands[j].id]
		if ki != kj {
			return ki < kj
		}
		return cands[i].id < cands[j].id
	})
}

// load loads and cleans the texts of batch on o.Workers goroutines into
// texts[i] and errs[i].
func (o *Options) load(batch []candidate, texts []string, errs []error) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t, err := batch[i].load()
				texts[i], errs[i] = Clean(t), err
			}
		}()
	}
	for i := range batch {
		next <- i
	}
	close(next)
	wg.Wait()
}
