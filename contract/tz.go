package contract

import (
	"sync"
	"time"
	_ "time/tzdata" // zones work on machines without /usr/share/zoneinfo
)

var zones sync.Map // name -> *time.Location

// LoadLocation is time.LoadLocation with a cache: the dispatcher resolves a
// zone for every held message, and the standard call reads and parses the
// zone file each time.
func LoadLocation(name string) (*time.Location, error) {
	if v, ok := zones.Load(name); ok {
		return v.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, loc)
	return loc, nil
}
