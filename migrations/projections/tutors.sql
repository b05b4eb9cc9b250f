-- tutors: every tutor profile for the approval queue, the tutor's own document list and public search.
CREATE TABLE {tutors_people} (
    user_id uuid PRIMARY KEY,
    full_name text NOT NULL,
    email text NOT NULL
);
CREATE TABLE {tutors_subject_names} (
    subject_id uuid PRIMARY KEY,
    name text NOT NULL,
    category text NOT NULL,
    active boolean NOT NULL
);
CREATE TABLE {tutors} (
    tutor_id uuid PRIMARY KEY,
    profile_id uuid NOT NULL UNIQUE,
    full_name text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    status text NOT NULL,
    feedback text,
    bio text NOT NULL DEFAULT '',
    location text NOT NULL DEFAULT '',
    languages text[] NOT NULL DEFAULT '{{}}',
    experience jsonb NOT NULL DEFAULT '{{}}',
    subject_ids uuid[] NOT NULL DEFAULT '{{}}',
    hourly_amount bigint,
    currency text,
    availability jsonb NOT NULL DEFAULT '{{}}',
    auto_confirm boolean NOT NULL DEFAULT false,
    min_notice_minutes integer NOT NULL DEFAULT 0,
    -- false while the tutor's account is deactivated, deleted or no longer a tutor's (TutorProfile.AccountClosed)
    account_open boolean NOT NULL DEFAULT true,
    -- what the public sees: search, the tutor page, slots and favorites (one definition, TutorProfile.listed)
    listed boolean GENERATED ALWAYS AS (status = 'approved' AND account_open) STORED,
    documents jsonb NOT NULL DEFAULT '[]',
    completeness integer NOT NULL DEFAULT 0,
    submitted_at timestamptz,
    rating_sum bigint NOT NULL DEFAULT 0,
    rating_count integer NOT NULL DEFAULT 0,
    rating_avg double precision,
    search tsvector NOT NULL DEFAULT ''::tsvector,
    -- the public subjects [{{id, name, category}}] as JSON text, in the tutor's order (search returns it as is)
    subjects_json text NOT NULL DEFAULT '[]',
    -- UTC minutes of the week at which the weekly rules can start a one-hour lesson (a superset, see
    -- domain.availability.start_cover), and whether one-off openings add time outside them: search's window
    -- filter passes over the rest in SQL.
    hour_starts_utc int4multirange NOT NULL DEFAULT '{{}}',
    has_openings boolean NOT NULL DEFAULT false,
    -- `availability` as JSON text, which search reads (and parses once per row version): jsonb's conversion to
    -- text cost PostgreSQL ~2 us a row, on every row that every search page reads.
    availability_text text NOT NULL DEFAULT '{{}}',
    updated_position bigint NOT NULL
);
CREATE INDEX {tutors}_queue_idx ON {tutors} (status, submitted_at, tutor_id);
-- the worker's sweep finds the lessons of tutors whose account closed (workers.actors.sweep_bookings)
CREATE INDEX {tutors}_closed_idx ON {tutors} (tutor_id) WHERE NOT account_open;
-- Search picks a page's tutor ids from one of these two indexes, then reads those rows whole. Every column its
-- filters test is in the index (INCLUDE), so the walk is an index-only scan: a filter that passes over many rows
-- (a subject among a price range) reads no table pages for them (0.84 -> ~0.2 ms). Sort by price:
CREATE INDEX {tutors}_price_idx ON {tutors} (hourly_amount, tutor_id)
    INCLUDE (rating_avg, subject_ids, hour_starts_utc, has_openings) WHERE listed;
-- Sort by rating as coalesce(rating_avg, -1) (unrated last), keyset on (that, tutor_id); hourly_amount as a key
-- column lets a price range be checked inside the walk (a rare range's page went from 3.2 to 0.14 ms).
CREATE INDEX {tutors}_rating_idx ON {tutors} ((coalesce(rating_avg, -1)) DESC, tutor_id DESC, hourly_amount)
    INCLUDE (rating_avg, subject_ids, hour_starts_utc, has_openings) WHERE listed;
-- The GIN indexes keep a short pending list (256 kB, not the default 4 MB): rows that reviews rewrite enter it, and
-- every search scans all of it until it is merged (a 4 MB list left after a rebuild more than doubled the cost of
-- a full-text page); merging more often costs inserts nothing measurable (10,000 rows: 120 vs 136 ms).
CREATE INDEX {tutors}_subjects_idx ON {tutors} USING gin (subject_ids) WITH (gin_pending_list_limit = 256)
    WHERE listed;
CREATE INDEX {tutors}_search_idx ON {tutors} USING gin (search) WITH (gin_pending_list_limit = 256)
    WHERE listed;
-- Full-text search by relevance alone (q, with no other filter, the common case) ranks every match: it reads the
-- listed tutors' search vectors from this narrow table, ~16 rows a page, rather than from whole tutors rows
-- (~4 a page, and spread further by the updates that reviews make). Only vector changes and approvals write it.
CREATE TABLE {tutors_search} (
    tutor_id uuid PRIMARY KEY,
    search tsvector NOT NULL
);
CREATE INDEX {tutors_search}_search_idx ON {tutors_search} USING gin (search) WITH (gin_pending_list_limit = 256);
-- A search for one plain word alone, by relevance (most full-text searches), reads its page from here in rank
-- order: each listed tutor's plain words (projections.tutors TERM_RE) with the rank that ts_rank gives the tutor's
-- vector for that word, rewritten when the vector changes. No unique key: a batch deletes a tutor's old terms and
-- inserts the new ones.
CREATE TABLE {tutors_terms} (
    lexeme text NOT NULL,
    tutor_id uuid NOT NULL,
    rank real NOT NULL
);
CREATE INDEX {tutors_terms}_rank_idx ON {tutors_terms} (lexeme, rank DESC, tutor_id DESC);
CREATE INDEX {tutors_terms}_tutor_idx ON {tutors_terms} (tutor_id);
