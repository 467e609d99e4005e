"""The helpdesk core: tickets, messages and attachments."""
