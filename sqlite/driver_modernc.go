//go:build !sqlite_cgo

package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"net/url"
	"strings"

	"modernc.org/sqlite"
)

// DriverName names the SQLite driver built in: modernc.org/sqlite, pure Go,
// unless the binary was built with -tags sqlite_cgo.
const DriverName = "modernc.org/sqlite"

// newConnector returns a connector whose connections run pragmas ("name =
// value") when they open, and begin transactions IMMEDIATE when immediate.
// Its driver is an instance of our own, so that nothing depends on the
// process-wide "sqlite" driver.
func newConnector(path string, immediate bool, pragmas ...string) driver.Connector {
	drv := &sqlite.Driver{}
	q := url.Values{}
	for _, p := range pragmas {
		name, value, _ := strings.Cut(p, " = ")
		q.Add("_pragma", name+"("+value+")")
	}
	if immediate {
		q.Set("_txlock", "immediate")
	}
	return connector{drv: drv, dsn: path + "?" + q.Encode()}
}

// connector opens connections of drv with one DSN.
type connector struct {
	drv *sqlite.Driver
	dsn string
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.drv.Open(c.dsn)
}

func (c connector) Driver() driver.Driver { return c.drv }

// resultCode returns the extended SQLite result code of a driver error.
func resultCode(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}
