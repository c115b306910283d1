"""hot lookup indexes: inbound (workspace_id, message_id) and (workspace_id, raw_sha256);
outbound (rcpt_to, automatic, created_at)

Dedupe and threading look a Message-ID or raw hash up within one workspace for every message;
with only single-column indexes, SQLite without statistics chose the workspace_id index and
walked all of the workspace's mail each time. The loop brake counts an address's automatic
mail of the last hour on every send; with `automatic` in the index that count reads no rows.

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
    op.drop_index("ix_outboundmessage_rcpt_recent", table_name="outboundmessage")
    op.create_index("ix_outboundmessage_rcpt_recent", "outboundmessage",
                    ["rcpt_to", "automatic", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outboundmessage_rcpt_recent", table_name="outboundmessage")
    op.create_index("ix_outboundmessage_rcpt_recent", "outboundmessage", ["rcpt_to", "created_at"])
    op.drop_index("ix_inboundmessage_workspace_sha256", table_name="inboundmessage")
    op.drop_index("ix_inboundmessage_workspace_message", table_name="inboundmessage")
