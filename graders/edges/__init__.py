"""Where submissions come in and grades go out: LMS downloads and uploads (Canvas, Moodle) and
nbgrader's exchange on a shared server. The middle never knows which edge a student came by."""
