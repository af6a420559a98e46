"""desk four eyes: approvals of changes to an active doctor's sign-in, the separation of duties
between a doctor's account and the letters directed to it, the desk's steps kept server-side,
and the two account emails of the outbox (change_requested, account_changed)

Revision ID: 0011_desk_four_eyes
Revises: 0010_api_client_scopes
Create Date: 2026-11-24 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011_desk_four_eyes'
down_revision = '0010_api_client_scopes'
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('arrival', 'digest', 'email_confirm', 'email_changed')"
NEW_KINDS = ("kind IN ('arrival', 'digest', 'email_confirm', 'email_changed', "
             "'change_requested', 'account_changed')")


def upgrade():
    op.create_table('desk_approvals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('doctor_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('change', sa.JSON(), nullable=False),
    sa.Column('told_address', sa.String(length=320), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decision', sa.String(length=16), nullable=True),
    sa.CheckConstraint("kind IN ('enrolment', 'password_reset', 'mobile_change')",
                       name=op.f('ck_desk_approvals_kind')),
    sa.CheckConstraint("decision IS NULL OR decision IN ('approved', 'refused', 'withdrawn')",
                       name=op.f('ck_desk_approvals_decision')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['staff_users.id'],
                            name=op.f('fk_desk_approvals_decided_by_id_staff_users')),
    sa.ForeignKeyConstraint(['doctor_id'], ['doctors.id'],
                            name=op.f('fk_desk_approvals_doctor_id_doctors')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['staff_users.id'],
                            name=op.f('fk_desk_approvals_requested_by_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_desk_approvals'))
    )
    with op.batch_alter_table('desk_approvals', schema=None) as batch_op:
        batch_op.create_index('ix_desk_approvals_open', ['decided_at', 'expires_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_desk_approvals_doctor_id'), ['doctor_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_desk_approvals_requested_by_id'),
                              ['requested_by_id'], unique=False)

    op.create_table('doctor_duties',
    sa.Column('doctor_id', sa.Integer(), nullable=False),
    sa.Column('staff_user_id', sa.Integer(), nullable=False),
    sa.Column('duty', sa.String(length=16), nullable=False),
    sa.Column('first_act', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("duty IN ('account', 'letters')", name=op.f('ck_doctor_duties_duty')),
    sa.ForeignKeyConstraint(['doctor_id'], ['doctors.id'],
                            name=op.f('fk_doctor_duties_doctor_id_doctors')),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'],
                            name=op.f('fk_doctor_duties_staff_user_id_staff_users')),
    sa.PrimaryKeyConstraint('doctor_id', 'staff_user_id', name=op.f('pk_doctor_duties'))
    )
    with op.batch_alter_table('doctor_duties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_doctor_duties_staff_user_id'), ['staff_user_id'],
                              unique=False)

    op.create_table('desk_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('staff_user_id', sa.Integer(), nullable=False),
    sa.Column('doctor_id', sa.Integer(), nullable=True),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.LargeBinary(length=12), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('enrolment', 'mobile_change', 'credentials')",
                       name=op.f('ck_desk_steps_kind')),
    sa.ForeignKeyConstraint(['doctor_id'], ['doctors.id'],
                            name=op.f('fk_desk_steps_doctor_id_doctors')),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'],
                            name=op.f('fk_desk_steps_staff_user_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_desk_steps')),
    sa.UniqueConstraint('handle_hash', name=op.f('uq_desk_steps_handle_hash'))
    )
    with op.batch_alter_table('desk_steps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_desk_steps_expires_at'), ['expires_at'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_desk_steps_staff_user_id'), ['staff_user_id'],
                              unique=False)

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_notifications_kind'), NEW_KINDS)


def downgrade():
    # The account emails have no place in the older schema: they go with it.
    op.execute("DELETE FROM notifications WHERE kind IN ('change_requested', 'account_changed')")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_notifications_kind'), OLD_KINDS)

    with op.batch_alter_table('desk_steps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_desk_steps_staff_user_id'))
        batch_op.drop_index(batch_op.f('ix_desk_steps_expires_at'))
    op.drop_table('desk_steps')

    with op.batch_alter_table('doctor_duties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_doctor_duties_staff_user_id'))
    op.drop_table('doctor_duties')

    with op.batch_alter_table('desk_approvals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_desk_approvals_requested_by_id'))
        batch_op.drop_index(batch_op.f('ix_desk_approvals_doctor_id'))
        batch_op.drop_index('ix_desk_approvals_open')
    op.drop_table('desk_approvals')
