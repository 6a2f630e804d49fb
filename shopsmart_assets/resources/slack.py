"""Alerts to Slack through dagster-slack's `SlackResource` (slack_sdk's Web API client).

The bot token comes in through `dagster.EnvVar("SLACK_BOT_TOKEN")`, so Dagster shows the
variable's name, never its value; the API base URL can be pointed elsewhere (a local
Slack-compatible server in the tests, a proxy in locked-down networks).
"""

from __future__ import annotations

import dagster as dg
from dagster_slack import SlackResource
from slack_sdk import WebClient

from shopsmart_assets import settings


class SlackAlerts(SlackResource):
    """dagster-slack's resource with a channel and an API base URL. With no token, `enabled` is
    false and nothing is sent."""

    token: str | None = None  # type: ignore[assignment]  # optional here: alerts can be off
    channel: str = "#shopsmart-data-alerts"
    api_url: str = "https://slack.com/api/"

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def get_client(self) -> WebClient:
        return WebClient(token=self.token, base_url=self.api_url)

    def post(self, text: str) -> str | None:
        """Post a message; returns Slack's message timestamp, or None when disabled."""
        if not self.enabled:
            return None
        return self.get_client().chat_postMessage(channel=self.channel, text=text).get("ts")


def slack_alerts() -> SlackAlerts:
    """The alerts resource as the environment configures it."""
    token = (
        dg.EnvVar(settings.SLACK_TOKEN_VAR) if settings.is_set(settings.SLACK_TOKEN_VAR) else None
    )
    api_url = settings.slack_api_url()
    return SlackAlerts(
        token=token,
        channel=settings.slack_channel(),
        api_url=api_url if api_url.endswith("/") else api_url + "/",
    )
