"""deliveries: the doctor's letters newest first, walked in index order (Mes documents)

Mes documents asks for one doctor's visible letters ordered by (delivered_at, id) descending,
25 at a time. With (doctor_id, status, delivered_at) only, PostgreSQL fetched and joined every
letter of the doctor before sorting: a page cost grew with the doctor's letters. This index is
walked backwards from the newest letter and stops after one page.

Revision ID: 0007_deliveries_recent_index
Revises: 0006_delivery_handling
Create Date: 2026-11-23 17:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007_deliveries_recent_index'
down_revision = '0006_delivery_handling'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_recent', ['doctor_id', 'delivered_at', 'id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_recent')
