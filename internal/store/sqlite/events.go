package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/internal/audit"
)

var _ audit.Store = (*DB)(nil)

const eventColumns = `seq, time, type, actor, agent, chain, on_behalf_of, task, action, resource,
	decision, reason, details, request_id, point`

const qInsertEvent = `INSERT INTO events (time, type, actor, agent, chain, on_behalf_of, task, action, resource,
	decision, reason, details, request_id, point) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// AppendEvents implements audit.Store. Seq is assigned only once the
// transaction commits; on error the events are left unchanged.
func (db *DB) AppendEvents(ctx context.Context, evs []*audit.Event) error {
	if len(evs) == 0 {
		return nil
	}
	seqs := make([]int64, len(evs))
	err := db.write(ctx, func(tx *sql.Tx) error {
		stmt := db.txStmt(ctx, tx, qInsertEvent)
		for i, ev := range evs {
			if err := checkTimes(ev.Time); err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			var chain, details string
			if len(ev.Chain) > 0 {
				b, err := json.Marshal(ev.Chain)
				if err != nil {
					return err
				}
				chain = string(b)
			}
			if len(ev.Details) > 0 {
				b, err := json.Marshal(ev.Details)
				if err != nil {
					return err
				}
				details = string(b)
			}
			res, err := stmt.ExecContext(ctx, timeArg(ev.Time), string(ev.Type), ev.Actor, ev.Agent, nullString(chain),
				ev.OnBehalfOf, ev.Task, ev.Action, ev.Resource, ev.Decision, ev.Reason, nullString(details), ev.RequestID, ev.Point)
			if err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
			if seqs[i], err = res.LastInsertId(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: append events: %w", err)
	}
	for i, ev := range evs {
		ev.Seq = seqs[i]
	}
	return nil
}

// ListEvents implements audit.Store. Since is inclusive and Until
// exclusive: an event matches if Since <= Time < Until.
func (db *DB) ListEvents(ctx context.Context, q audit.Query) ([]*audit.Event, error) {
	evs, err := db.listEvents(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	return evs, nil
}

func (db *DB) listEvents(ctx context.Context, q audit.Query) ([]*audit.Event, error) {
	if err := checkTimes(q.Since, q.Until); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if q.Type != "" {
		where, args = append(where, "type = ?"), append(args, string(q.Type))
	}
	if q.Agent != "" {
		where, args = append(where, "agent = ?"), append(args, q.Agent)
	}
	if q.Task != "" {
		where, args = append(where, "task = ?"), append(args, q.Task)
	}
	if q.AfterSeq > 0 {
		where, args = append(where, "seq > ?"), append(args, q.AfterSeq)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, q.Until.UnixNano())
	}
	query := `SELECT ` + eventColumns + ` FROM events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY seq`
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := db.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var evs []*audit.Event
	for rows.Next() {
		var (
			ev             audit.Event
			typ            string
			when           sql.NullInt64
			chain, details sql.NullString
		)
		if err := rows.Scan(&ev.Seq, &when, &typ, &ev.Actor, &ev.Agent, &chain, &ev.OnBehalfOf, &ev.Task,
			&ev.Action, &ev.Resource, &ev.Decision, &ev.Reason, &details, &ev.RequestID, &ev.Point); err != nil {
			return nil, err
		}
		ev.Type, ev.Time = audit.Type(typ), timeVal(when)
		if chain.Valid {
			if err := json.Unmarshal([]byte(chain.String), &ev.Chain); err != nil {
				return nil, fmt.Errorf("stored event %d: chain: %w", ev.Seq, err)
			}
		}
		if details.Valid {
			if err := json.Unmarshal([]byte(details.String), &ev.Details); err != nil {
				return nil, fmt.Errorf("stored event %d: details: %w", ev.Seq, err)
			}
		}
		evs = append(evs, &ev)
	}
	return evs, rows.Err()
}
