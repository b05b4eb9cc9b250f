-- student_favorites: each student's favorite tutors.
CREATE TABLE {student_favorites} (
    student_id uuid NOT NULL,
    tutor_id uuid NOT NULL,
    added_position bigint NOT NULL,
    PRIMARY KEY (student_id, tutor_id)
);
