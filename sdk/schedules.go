package sdk

import (
	"context"
	"strconv"
	"time"
)

// Schedules: periodic submits. A schedule (a cron expression read in a time
// zone, or a fixed interval) submits one execution per tick, built from
// its template. The engines fire the ticks (the schedules scanner); each
// tick creates its execution with the idempotency key ScheduleTickKey, and
// the schedule's next tick advances in the same atomic call as the create,
// so a tick fires once however many engines run and whenever they restart.

// ScheduleID names a schedule (a name, as lanes are; ':' is not allowed).
type ScheduleID string

// Validate checks a schedule id like a lane name; ':' is not allowed either.
func (s ScheduleID) Validate() error { return validatePolicyName("schedule id", string(s)) }

// CatchUp says which missed ticks fire once an engine finds them: a tick is
// missed when it is found more than the schedule's Grace after its time
// (an outage, every engine stopped, or a Start in the past). Ticks found
// within Grace always fire.
type CatchUp string

// The catch-up policies.
const (
	// CatchUpOne fires the latest missed tick and skips the older ones:
	// one run stands for the outage. The default.
	CatchUpOne CatchUp = "one"
	// CatchUpSkip fires none of the missed ticks.
	CatchUpSkip CatchUp = "skip"
	// CatchUpAll fires the latest CatchUpMax missed ticks, oldest first,
	// and skips older ones.
	CatchUpAll CatchUp = "all"
)

// Schedule defaults and limits.
const (
	// ScheduleGraceDefault is Schedule.Grace's default.
	ScheduleGraceDefault = time.Minute
	// ScheduleCatchUpMaxDefault is Schedule.CatchUpMax's default.
	ScheduleCatchUpMaxDefault = 100
	// MaxScheduleCatchUp bounds Schedule.CatchUpMax.
	MaxScheduleCatchUp = 10000
	// MinScheduleInterval is the shortest Schedule.Every, and the shortest
	// Grace.
	MinScheduleInterval = time.Second
	// MaxScheduleGrace bounds Schedule.Grace.
	MaxScheduleGrace = 24 * time.Hour
)

// Schedule error codes.
const (
	// CodeScheduleNotFound: no schedule has the id.
	CodeScheduleNotFound = "schedule_not_found"
	// CodeScheduleChanged: the schedule changed since the caller read it
	// (another engine fired it, or it was replaced, paused, resumed or
	// deleted meanwhile); nothing was written. Read it again.
	CodeScheduleChanged = "schedule_changed"
)

// Sentinels of the schedule codes.
var (
	ErrScheduleNotFound = &Error{Kind: KindNotFound, Code: CodeScheduleNotFound}
	ErrScheduleChanged  = &Error{Kind: KindContention, Code: CodeScheduleChanged}
)

// Schedule is a schedule's definition: when it ticks and what each tick
// submits.
type Schedule struct {
	ID ScheduleID
	// Cron is a five-field cron expression (minute, hour, day of month,
	// month, day of week) or a descriptor (@hourly, @daily, @weekly,
	// @monthly, @yearly), read in TimeZone. Exactly one of Cron and Every
	// is set. The backend checks its syntax.
	Cron string
	// TimeZone is the IANA name of the zone Cron is read in (only with
	// Cron). Default "UTC". A time a DST change skips does not exist, and
	// one it repeats exists twice: see the README's Schedules section for
	// which ticks fire then.
	TimeZone string
	// Every is a fixed interval, in whole milliseconds, at least
	// MinScheduleInterval: ticks fall at Start + k*Every (k >= 1).
	Every time.Duration
	// Start: ticks fall strictly after it. Default: when the schedule was
	// created (server time); a replace that keeps Cron, TimeZone and Every
	// keeps it. A Start in the past makes the ticks since missed ticks.
	Start time.Time
	// CatchUp is the missed-tick policy. Default CatchUpOne.
	CatchUp CatchUp
	// CatchUpMax bounds the missed ticks CatchUpAll fires. Default
	// ScheduleCatchUpMaxDefault (100), at most MaxScheduleCatchUp.
	CatchUpMax int
	// Grace is how late a tick may be found and still fire as on time.
	// Default ScheduleGraceDefault (1m); 1s..24h.
	Grace time.Duration
	// TickTag, when set, names a tag each execution carries with its tick's
	// time in unix milliseconds (decimal), so a handler knows which tick
	// it runs for. Default none.
	TickTag string

	// The execution each tick submits (as CreateExecutionArgs).
	Lane                 LaneID
	Kind                 string
	Payload              []byte
	Priority             int
	Tags                 map[string]string
	RequiredCapabilities []string
	Retry                RetryPolicy
	AttemptTimeout       time.Duration
}

// ScheduleTickKey is the idempotency key of schedule id's execution for
// the tick at tick: "sched:<id>:<unix ms>".
func ScheduleTickKey(id ScheduleID, tick time.Time) string {
	return "sched:" + string(id) + ":" + strconv.FormatInt(tick.UnixMilli(), 10)
}

// Execution returns the create of the tick at tick: the template, the
// TickTag and the idempotency key ScheduleTickKey.
func (s Schedule) Execution(tick time.Time) CreateExecutionArgs {
	tags := s.Tags
	if s.TickTag != "" {
		tags = make(map[string]string, len(s.Tags)+1)
		for k, v := range s.Tags {
			tags[k] = v
		}
		tags[s.TickTag] = strconv.FormatInt(tick.UnixMilli(), 10)
	}
	return CreateExecutionArgs{Lane: s.Lane, Kind: s.Kind, Payload: s.Payload, Priority: s.Priority, Tags: tags,
		RequiredCapabilities: s.RequiredCapabilities, Retry: s.Retry, AttemptTimeout: s.AttemptTimeout,
		IdempotencyKey: ScheduleTickKey(s.ID, tick)}
}

// Resolve checks a schedule and fills the defaults (TimeZone, CatchUp,
// CatchUpMax, Grace). The cron syntax is the backend's to check.
func (s Schedule) Resolve() (Schedule, error) {
	if err := s.ID.Validate(); err != nil {
		return s, err
	}
	switch {
	case (s.Cron == "") == (s.Every == 0):
		return s, validationf(CodeInvalidInput, "schedule %q: set exactly one of Cron and Every", s.ID)
	case s.Every != 0 && (s.Every < MinScheduleInterval || s.Every%time.Millisecond != 0):
		return s, validationf(CodeInvalidInput, "schedule %q: Every %v is not whole milliseconds of at least %v", s.ID, s.Every, MinScheduleInterval)
	case s.Every != 0 && s.TimeZone != "":
		return s, validationf(CodeInvalidInput, "schedule %q: a time zone goes with Cron only", s.ID)
	case len(s.Cron) > 256:
		return s, validationf(CodeInvalidInput, "schedule %q: cron expression over 256 bytes", s.ID)
	}
	if s.Cron != "" {
		if s.TimeZone == "" {
			s.TimeZone = "UTC"
		}
		if _, err := s.Location(); err != nil {
			return s, err
		}
	}
	if !s.Start.IsZero() && s.Start.UnixMilli() < 0 {
		return s, validationf(CodeInvalidInput, "schedule %q: Start before 1970", s.ID)
	}
	switch s.CatchUp {
	case "":
		s.CatchUp = CatchUpOne
	case CatchUpOne, CatchUpSkip, CatchUpAll:
	default:
		return s, validationf(CodeInvalidInput, "schedule %q: unknown catch-up policy %q", s.ID, truncate(string(s.CatchUp)))
	}
	if s.CatchUpMax < 0 || s.CatchUpMax > MaxScheduleCatchUp {
		return s, validationf(CodeInvalidInput, "schedule %q: CatchUpMax %d out of range 0..%d", s.ID, s.CatchUpMax, MaxScheduleCatchUp)
	}
	if s.CatchUpMax == 0 {
		s.CatchUpMax = ScheduleCatchUpMaxDefault
	}
	if s.Grace == 0 {
		s.Grace = ScheduleGraceDefault
	}
	if s.Grace < MinScheduleInterval || s.Grace > MaxScheduleGrace {
		return s, validationf(CodeInvalidInput, "schedule %q: Grace %v out of range %v..%v", s.ID, s.Grace, MinScheduleInterval, MaxScheduleGrace)
	}
	if s.TickTag != "" {
		if len(s.TickTag) > MaxIDLength {
			return s, validationf(CodeInvalidInput, "schedule %q: TickTag over %d bytes", s.ID, MaxIDLength)
		}
		if _, dup := s.Tags[s.TickTag]; dup {
			return s, validationf(CodeInvalidInput, "schedule %q: TickTag %q is also one of Tags", s.ID, truncate(s.TickTag))
		}
	}
	// The template, as a tick would submit it (its tick tag a full-width
	// value, so the size checks hold for every tick).
	if _, err := s.Execution(time.UnixMilli(1 << 42)).Resolve(); err != nil {
		return s, err
	}
	return s, nil
}

// Validate reports what Resolve would refuse.
func (s Schedule) Validate() error {
	_, err := s.Resolve()
	return err
}

// Location loads TimeZone ("" is UTC). "Local" is refused: it would
// depend on each engine host's setting.
func (s Schedule) Location() (*time.Location, error) {
	if s.TimeZone == "" {
		return time.UTC, nil
	}
	if s.TimeZone == "Local" || len(s.TimeZone) > 128 {
		return nil, validationf(CodeInvalidInput, "schedule %q: time zone %q is not an IANA zone name", s.ID, truncate(s.TimeZone))
	}
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return nil, validationf(CodeInvalidInput, "schedule %q: unknown time zone %q", s.ID, truncate(s.TimeZone))
	}
	return loc, nil
}

// ScheduleStatus is a schedule with its state.
type ScheduleStatus struct {
	// Schedule as stored: defaults filled, Start the effective one.
	Schedule
	Paused bool
	// NextTick is the next tick to fire (zero when paused or when the
	// schedule has no tick left).
	NextTick time.Time
	// LastTick is the last tick fired (zero before the first) and
	// LastExecution its execution.
	LastTick      time.Time
	LastExecution ExecutionID
	// Fired counts the executions the schedule created; Skipped the missed
	// ticks its catch-up policy skipped.
	Fired, Skipped uint64
	// Revision counts the changes of definition or state (puts, pauses,
	// resumes), not the firings.
	Revision             uint64
	CreatedAt, UpdatedAt time.Time
}

// FireSchedulesArgs asks for the due schedules of one partition to fire.
type FireSchedulesArgs struct {
	Partition int
	// Now decides which ticks are due (tick <= Now) and which are missed
	// (Now - tick > Grace). The engine passes its estimate of the server
	// clock; tests pass a fixed clock.
	Now time.Time
	// Limit bounds the schedules read in one call. Default 100.
	Limit int
}

// FireSchedulesResult tallies one FireDueSchedules call.
type FireSchedulesResult struct {
	// Schedules is how many due schedules were read (Limit of them: call
	// again).
	Schedules int
	// Fired counts the executions created; Duplicates the ticks whose
	// execution existed already (a tick fired again, found by its
	// idempotency key: nothing was created); Skipped the missed ticks the
	// catch-up policies skipped; Changed the schedules that changed
	// between the read and the fire (another engine fired them, or an
	// operator changed them): they are fired by a later call if still due.
	Fired, Duplicates, Skipped, Changed int
}

// Scheduler keeps schedules and fires them (RoleSchedules).
type Scheduler interface {
	// PutSchedule creates schedule s or replaces its definition (created
	// reports which). A replace keeps its state (paused, counters) and,
	// when Cron, TimeZone, Every and Start are unchanged (or Start is
	// left zero), its next tick.
	PutSchedule(ctx context.Context, s Schedule) (created bool, err error)
	// GetSchedule reads a schedule; ErrScheduleNotFound when none has id.
	GetSchedule(ctx context.Context, id ScheduleID) (ScheduleStatus, error)
	// ListSchedules returns up to limit schedules (default 100, at most
	// 1000) in id order, from the first id after after ("" = from the
	// start).
	ListSchedules(ctx context.Context, after ScheduleID, limit int) ([]ScheduleStatus, error)
	// PauseSchedule stops a schedule's ticks until ResumeSchedule, which
	// places its next tick after the server's time: ticks that fell while
	// it was paused never fire. Pausing a paused schedule, or resuming a
	// running one, changes nothing. A resume that races a PutSchedule is
	// ErrScheduleChanged (try again).
	PauseSchedule(ctx context.Context, id ScheduleID) error
	ResumeSchedule(ctx context.Context, id ScheduleID) error
	// DeleteSchedule removes a schedule (executions it created stay).
	DeleteSchedule(ctx context.Context, id ScheduleID) error
	// FireDueSchedules fires the ticks due by args.Now of one partition's
	// schedules (the schedules scanner's action): each tick's execution
	// is created and the schedule advanced in one atomic call that checks
	// the schedule is as read, so a tick fires once across engines.
	FireDueSchedules(ctx context.Context, args FireSchedulesArgs) (FireSchedulesResult, error)
}
