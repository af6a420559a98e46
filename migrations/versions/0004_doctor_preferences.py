"""doctor preferences (Mon profil): digest hour, default views, landing page, language

Revision ID: 0004_doctor_preferences
Revises: 0003_sign_in_state
Create Date: 2026-11-23 14:35:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_doctor_preferences'
down_revision = '0003_sign_in_state'
branch_labels = None
depends_on = None

CHECKS = (
    ("digest_hour", "digest_hour BETWEEN 0 AND 23"),
    ("patients_view", "patients_view IN ('all', 'recent', 'unread')"),
    ("patients_recent_months", "patients_recent_months BETWEEN 1 AND 120"),
    ("documents_view", "documents_view IN ('all', 'unread')"),
    ("landing_page", "landing_page IN ('documents', 'patients', 'profile')"),
    ("language", "language IN ('fr', 'en')"),
)


def upgrade():
    with op.batch_alter_table('doctors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_hour', sa.Integer(), server_default='7', nullable=False))
        batch_op.add_column(sa.Column('patients_view', sa.String(length=16), server_default='all', nullable=False))
        batch_op.add_column(sa.Column('patients_recent_months', sa.Integer(), server_default='12', nullable=False))
        batch_op.add_column(sa.Column('documents_view', sa.String(length=16), server_default='all', nullable=False))
        batch_op.add_column(sa.Column('landing_page', sa.String(length=16), server_default='documents', nullable=False))
        batch_op.add_column(sa.Column('language', sa.String(length=2), server_default='fr', nullable=False))
        for name, condition in CHECKS:
            batch_op.create_check_constraint(op.f(f'ck_doctors_{name}'), condition)


def downgrade():
    with op.batch_alter_table('doctors', schema=None) as batch_op:
        for name, _ in reversed(CHECKS):
            batch_op.drop_constraint(op.f(f'ck_doctors_{name}'), type_='check')
        for column in ('language', 'landing_page', 'documents_view', 'patients_recent_months',
                       'patients_view', 'digest_hour'):
            batch_op.drop_column(column)
