"""The data model, one module per aggregate. Importing this package registers every table."""

from app.models.api_client import ApiClient, ApiClientScope
from app.models.audit import AuditEvent, AuditHead
from app.models.auth import EndedSession, OneTimeCode, SamlAssertion, SamlRequest
from app.models.desk import DeskApproval, DeskStep, DoctorDuty
from app.models.doctor import Doctor, DoctorSpecialty, HinIdentity
from app.models.document import Delivery, Document, DocumentContent
from app.models.notify import EmailChange, Notification
from app.models.patient import Consent, Patient
from app.models.staff import RecoveryCode, StaffUser

__all__ = [
    "ApiClient",
    "ApiClientScope",
    "AuditEvent",
    "AuditHead",
    "Consent",
    "Delivery",
    "DeskApproval",
    "DeskStep",
    "Doctor",
    "DoctorDuty",
    "DoctorSpecialty",
    "Document",
    "DocumentContent",
    "EmailChange",
    "EndedSession",
    "HinIdentity",
    "Notification",
    "OneTimeCode",
    "Patient",
    "RecoveryCode",
    "SamlAssertion",
    "SamlRequest",
    "StaffUser",
]
