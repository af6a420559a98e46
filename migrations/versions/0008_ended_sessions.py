"""ended sessions: a signed-out session's cookie is refused even if a copy was kept

Revision ID: 0008_ended_sessions
Revises: 0007_deliveries_recent_index
Create Date: 2026-11-23 19:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_ended_sessions'
down_revision = '0007_deliveries_recent_index'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('ended_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_ended_sessions'))
    )
    with op.batch_alter_table('ended_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ended_sessions_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('ended_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ended_sessions_expires_at'))

    op.drop_table('ended_sessions')
