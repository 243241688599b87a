package sqlite_test

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// Run with: go test -run '^$' -bench . -cpu 2 ./internal/store/sqlite/

func benchTask(agent identity.ID, now time.Time) *task.Task {
	scope, err := task.ParseScope("file.read:/repo/** tool.call:github/*")
	if err != nil {
		panic(err)
	}
	return &task.Task{
		ID:          task.NewID(),
		Agent:       agent,
		OnBehalfOf:  "user:alice",
		Principal:   "user:alice",
		Purpose:     "benchmark",
		Scope:       scope,
		Sensitivity: task.SensitivityInternal,
		Actors:      []identity.ID{agent},
		Status:      task.StatusActive,
		CreatedAt:   now,
		ExpiresAt:   now.Add(time.Hour),
	}
}

func BenchmarkCreateTask(b *testing.B) {
	db := openTemp(b)
	a := testAgent("bench")
	if err := db.CreateAgent(b.Context(), a); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.CreateTask(b.Context(), benchTask(a.ID, now)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGetTask(b *testing.B) {
	db := openTemp(b)
	a := testAgent("bench")
	if err := db.CreateAgent(b.Context(), a); err != nil {
		b.Fatal(err)
	}
	tk := benchTask(a.ID, time.Now())
	if err := db.CreateTask(b.Context(), tk); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.GetTask(b.Context(), tk.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkUseOnce(b *testing.B) {
	db := openTemp(b)
	expires := time.Now().Add(time.Hour)
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "jti-" + strconv.FormatInt(n.Add(1), 10)
			if err := db.UseOnce(b.Context(), "assertion", id, expires); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkAppendEvents(b *testing.B) {
	for _, size := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := openTemp(b)
			now := time.Now().UTC()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					evs := make([]*audit.Event, size)
					for i := range evs {
						evs[i] = &audit.Event{
							Time: now, Type: audit.TypeTokenIssued,
							Agent:   "spiffe://example.org/agent/bench",
							Task:    "tsk_bench",
							Details: map[string]string{"grant_type": "client_credentials", "jti": "j"},
						}
					}
					if err := db.AppendEvents(b.Context(), evs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
