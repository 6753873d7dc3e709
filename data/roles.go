package data

import "slices"

// Domain roles: what a domain is for. The base model and its tokenizer are
// trained on the pretrain domains only; adapters are trained on the adapt
// domains, which pretraining never sees; the heldout domains are used by no
// training at all (evaluation of what neither the base nor an adapter saw).
const (
	RolePretrain = "pretrain"
	RoleAdapt    = "adapt"
	RoleHeldout  = "heldout"
)

// Roles lists the roles in build order.
var Roles = []string{RolePretrain, RoleAdapt, RoleHeldout}

// The adaptation and held-out domains (see doc.go for their sources).
const (
	DomainPython   = "python"
	DomainElisp    = "elisp"
	DomainVimHelp  = "vimhelp"
	DomainSpeeches = "speeches"
	DomainLicenses = "licenses"
	DomainGerman   = "german"

	DomainPerl    = "perl"
	DomainBrown   = "brown"
	DomainSpanish = "spanish"
)

// PretrainDomains are the base model's pretraining domains, in build order.
var PretrainDomains = []string{DomainCode, DomainProse, DomainScripture, DomainManuals, DomainEmail, DomainQuotes}

// AdaptDomains are the adaptation domains, in build order.
var AdaptDomains = []string{DomainPython, DomainElisp, DomainVimHelp, DomainSpeeches, DomainLicenses, DomainGerman}

// HeldoutDomains are the held-out domains, in build order.
var HeldoutDomains = []string{DomainPerl, DomainBrown, DomainSpanish}

// AllDomains lists every domain in build order: the pretraining domains
// first, so that adding domains never changes what they keep.
var AllDomains = slices.Concat(PretrainDomains, AdaptDomains, HeldoutDomains)

// DomainRole is the role of a known domain ("" for an unknown one).
func DomainRole(domain string) string {
	switch {
	case slices.Contains(PretrainDomains, domain):
		return RolePretrain
	case slices.Contains(AdaptDomains, domain):
		return RoleAdapt
	case slices.Contains(HeldoutDomains, domain):
		return RoleHeldout
	}
	return ""
}

// Role is the role the manifest gives domain. Manifests of format 1 have no
// roles: every domain of such a corpus is a pretraining domain, as is a
// domain whose entry has no role.
func (c *Corpus) Role(domain string) string {
	for _, d := range c.m.Domains {
		if d.Domain == domain && d.Role != "" {
			return d.Role
		}
	}
	return RolePretrain
}

// DomainsWithRole lists the corpus's domains of one role, in build order.
// Pretraining (train.LoadCorpus, the tokenizer, the model card's baseline)
// reads DomainsWithRole(RolePretrain) only.
func (c *Corpus) DomainsWithRole(role string) []string {
	var out []string
	for _, d := range c.Domains() {
		if c.Role(d) == role {
			out = append(out, d)
		}
	}
	return out
}
