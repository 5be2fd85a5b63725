package herald

import "bytes"

// EventKey identifies an event: its id is unique within its tenant.
type EventKey struct{ TenantID, ID string }

// StoredEvent is what a publish needs to know of an event already stored.
type StoredEvent struct {
	Hash       []byte
	Deliveries int
}

// PublishPlan sorts one EventPublish call's requests out, the same way for
// every store: repeats of stored events (answered from what is stored),
// conflicts (the same id with another Hash), repeats within the call
// (answered like their first), and the new events to store.
type PublishPlan struct {
	// Results has every request's EventID set, and the answers of repeats
	// and conflicts; the store fills in those of New.
	Results []PublishResult
	// New lists the requests to store, in order, each event once.
	New []int
	// First is the request that stores each new event.
	First    map[EventKey]int
	repeatOf map[int]int
}

// PlanPublish sorts reqs out against known, the stored events among them.
func PlanPublish(reqs []PublishRequest, known map[EventKey]StoredEvent) *PublishPlan {
	p := &PublishPlan{Results: make([]PublishResult, len(reqs)), First: map[EventKey]int{}, repeatOf: map[int]int{}}
	for i, req := range reqs {
		e := req.Event
		p.Results[i].EventID = e.ID
		key := EventKey{e.TenantID, e.ID}
		if old, ok := known[key]; ok {
			if !bytes.Equal(old.Hash, e.Hash) {
				p.Results[i].Err = ErrConflict
			} else {
				p.Results[i].Deliveries = old.Deliveries
			}
			continue
		}
		if j, ok := p.First[key]; ok {
			if !bytes.Equal(reqs[j].Event.Hash, e.Hash) {
				p.Results[i].Err = ErrConflict
			} else {
				p.repeatOf[i] = j
			}
			continue
		}
		p.First[key] = i
		p.New = append(p.New, i)
	}
	return p
}

// Finish answers the repeats within the call like their first request, once
// the store has filled in the results of New, and returns the results.
func (p *PublishPlan) Finish() []PublishResult {
	for i, j := range p.repeatOf {
		p.Results[i].Deliveries, p.Results[i].Err = p.Results[j].Deliveries, p.Results[j].Err
	}
	return p.Results
}
