"""inbound lookup indexes: (workspace_id, message_id) and (workspace_id, raw_sha256)

Dedupe and threading look a Message-ID or raw hash up within one workspace for every message;
with only single-column indexes, SQLite without statistics chose the workspace_id index and
walked all of the workspace's mail each time.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inboundmessage_workspace_message", "inboundmessage",
                    ["workspace_id", "message_id"])
    op.create_index("ix_inboundmessage_workspace_sha256", "inboundmessage",
                    ["workspace_id", "raw_sha256"])


def downgrade() -> None:
    op.drop_index("ix_inboundmessage_workspace_sha256", table_name="inboundmessage")
    op.drop_index("ix_inboundmessage_workspace_message", table_name="inboundmessage")
