package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
)

// TestBackgroundCheckpoint: what the writer commits reaches the database
// file through the checkpointer's connection, long before the WAL holds
// WALCheckpointPages, and once it has all been copied the next commit
// starts the WAL over.
func TestBackgroundCheckpoint(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.db")
	st, err := Open(context.Background(), Config{Path: path, Sealer: testSealer(t), CheckpointEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, st, sub("t1", "*"))
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	reqs := make([]herald.PublishRequest, 500)
	for i := range reqs {
		reqs[i] = event("t1", "a.b")
		reqs[i].Event.Data = []byte(`"` + strings.Repeat("x", 1000) + `"`)
	}
	mustPublish(t, st, t0, reqs...)
	// About 500 KiB of events: far below the writer's own checkpoint.
	for deadline := time.Now().Add(5 * time.Second); size()-before < 400<<10; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the database file grew by %d bytes in 5s; the checkpointer copied nothing", size()-before)
		}
	}
	// Let it finish copying, then one more commit starts the WAL over.
	time.Sleep(50 * time.Millisecond)
	mustPublish(t, st, t0, event("t1", "a.b"))
	frames, err := st.ckpt.checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if frames > 100 {
		t.Errorf("the WAL holds %d frames after a one-event commit; want it started over", frames)
	}
}
