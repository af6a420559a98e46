"""content retention: documents.purged_at, set when the content is deleted at the end of its
retention (DOCUMENT_RETENTION_YEARS after signed_at), and the index the purge walks

Revision ID: 0009_content_retention
Revises: 0008_ended_sessions
Create Date: 2026-11-23 19:30:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0009_content_retention'
down_revision = '0008_ended_sessions'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            'ix_documents_retention', ['purged_at', 'signed_at'], unique=False
        )


def downgrade():
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index('ix_documents_retention')
        batch_op.drop_column('purged_at')
