//go:build sqlite_cgo

package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"net/url"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// DriverName names the SQLite driver built in: github.com/mattn/go-sqlite3
// (cgo), chosen with -tags sqlite_cgo.
const DriverName = "github.com/mattn/go-sqlite3"

// newConnector returns a connector whose connections run pragmas ("name =
// value") when they open, and begin transactions IMMEDIATE when immediate.
// Its driver is an instance of our own, so that nothing is registered
// process-wide.
func newConnector(path string, immediate bool, pragmas ...string) driver.Connector {
	drv := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, p := range pragmas {
			if _, err := c.Exec("PRAGMA "+p, nil); err != nil {
				return err
			}
		}
		return nil
	}}
	q := url.Values{}
	if immediate {
		q.Set("_txlock", "immediate")
	}
	dsn := "file:" + path
	if len(q) > 0 {
		dsn += "?" + q.Encode()
	}
	return connector{drv: drv, dsn: dsn}
}

// connector opens connections of drv with one DSN.
type connector struct {
	drv *sqlite3.SQLiteDriver
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
	var se sqlite3.Error
	if errors.As(err, &se) {
		return int(se.ExtendedCode), true
	}
	return 0, false
}
