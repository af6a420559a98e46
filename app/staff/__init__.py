"""Hospital staff and desk: recipient lookup, consent, desk enrolment, audit viewer."""
