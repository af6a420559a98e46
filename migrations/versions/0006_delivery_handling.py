"""delivery handling: how staff handled a delivery on the worklist

Revision ID: 0006_delivery_handling
Revises: 0005_notifications
Create Date: 2026-11-23 16:05:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_delivery_handling'
down_revision = '0005_notifications'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handled_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('handling', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('handling_note', sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f('ix_deliveries_handled_at'), ['handled_at'], unique=False)
        batch_op.create_check_constraint(
            'handling',
            "handling IS NULL OR handling IN ('post', 'other_doctor', 'no_action', 'rechecked')",
        )


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_deliveries_handling'), type_='check')
        batch_op.drop_index(batch_op.f('ix_deliveries_handled_at'))
        batch_op.drop_column('handling_note')
        batch_op.drop_column('handling')
        batch_op.drop_column('handled_by')
        batch_op.drop_column('handled_at')
