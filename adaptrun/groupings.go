package adaptrun

import "strings"

// groupings lists the groupings each kind is scored under; the first is
// the one its learning rate is chosen by.
func groupings(m Method) []string {
	if len(m.Deep) > 0 && m.Kind == KindHyper {
		return []string{GroupOnline, GroupUngated, GroupClustered, GroupRandom, GroupShuffled}
	}
	switch m.Kind {
	case KindLoRA:
		switch {
		case m.Features == "":
			return []string{GroupStatic}
		case len(m.Deep) > 0: // the self-check scores prompts through the head-only path
			return []string{GroupStatic, GroupStaticGated}
		}
		return []string{GroupStatic, GroupStaticGated, GroupStaticChecked}
	case KindExperts:
		return []string{GroupOracle, GroupRouted, GroupSelected}
	case KindTable:
		return []string{GroupRouted, GroupSelected}
	}
	return []string{GroupOnline, GroupUngated, GroupChecked, GroupSelected, GroupClustered, GroupRandom, GroupMean, GroupShuffled}
}

// Matches says whether r is the row of grouping spec: GROUPING for the
// row behind its adapter's own gate (or none), GROUPING@FEATURES for the
// row behind the gate every method shares in that feature space
// (Config.SharedGates), e.g. online-checked@hidden.
func (r Row) Matches(spec string) bool {
	g, gate, _ := strings.Cut(spec, "@")
	return r.Grouping == g && r.Gate == gate
}

// checked says whether grouping g self-checks each update.
func checked(g string) bool {
	return g == GroupChecked || g == GroupStaticChecked || g == GroupTuned
}

// behindGate says whether grouping g puts a gate before the update (the
// rows a shared gate replays).
func behindGate(g string) bool {
	switch g {
	case GroupOnline, GroupChecked, GroupSelected, GroupTuned, GroupStaticGated, GroupStaticChecked:
		return true
	}
	return false
}

// harmApplies says whether a grouping can score windows of domains the
// adapter never trained on (the oracle has no expert for them).
func harmApplies(g string) bool { return g != GroupOracle && g != GroupMean && g != GroupShuffled }
