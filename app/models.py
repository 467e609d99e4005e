"""Imports every domain's models so Alembic and the tests see one metadata."""

from app.audit.models import AuditEvent
from app.auth.models import RecoveryCode, StaffSession, User, UserController
from app.blobs.models import Blob, BlobChunk
from app.controllers.models import Controller, ControllerContact, ControllerDomain, ControllerIdentifier
from app.crypto.models import DataKey, PeriodKey
from app.db import Base
from app.deletion.models import DeletionRun
from app.dsr.models import Dsr, DsrEvent, DsrForward, DsrSuggestion, Instruction, StandingInstruction
from app.jobs.models import JobState
from app.mail.models import OutboxEmail
from app.mail.quarantine import QuarantinedMessage
from app.retention.models import RetentionHold, RetentionPolicy, RetentionRun
from app.subject_data.models import DownloadToken, ErasedSubject, ExportLink, RestrictedTicket, Restriction, SubjectExport, SubjectRun
from app.tickets.identifiers import MessageIdentifier
from app.tickets.models import Attachment, Message, Ticket
from app.tickets.referenced import MessageReference

__all__ = [
    "RecoveryCode",
    "StaffSession",
    "User",
    "UserController",
    "AuditEvent",
    "Base",
    "Controller",
    "ControllerContact",
    "ControllerDomain",
    "ControllerIdentifier",
    "DataKey",
    "PeriodKey",
    "DeletionRun",
    "RetentionHold",
    "RetentionPolicy",
    "RetentionRun",
    "ErasedSubject",
    "ExportLink",
    "MessageIdentifier",
    "MessageReference",
    "Dsr",
    "DsrEvent",
    "DsrForward",
    "DsrSuggestion",
    "Instruction",
    "StandingInstruction",
    "JobState",
    "OutboxEmail",
    "QuarantinedMessage",
    "DownloadToken",
    "RestrictedTicket",
    "Restriction",
    "SubjectExport",
    "SubjectRun",
    "Attachment",
    "Blob",
    "BlobChunk",
    "Message",
    "Ticket",
]
