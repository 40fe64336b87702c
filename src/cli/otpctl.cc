#include "cli/otpctl.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>

#include "otp/base32.h"
#include "otp/clock.h"
#include "otp/hotp.h"
#include "otp/random.h"
#include "otp/totp.h"
#include "service/apps.h"
#include "service/config.h"
#include "service/hardware_tokens.h"
#include "service/limits.h"
#include "service/master_key.h"
#include "service/secrets.h"
#include "service/token_import.h"
#include "service/webhooks.h"
#include "store/open_store.h"

namespace otpd {
namespace {

using nlohmann::json;

int Error(const std::string& message) {
  std::cerr << "otpctl: " << message << "\n";
  return 1;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return otp::InvalidArgument("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A hardware token as `token list` shows it: never its secret.
json TokenJson(const HardwareToken& t) {
  auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  json j{{"serial", t.serial},
         {"type", t.type},
         {"algorithm", t.algorithm},
         {"digits", t.digits},
         {"imported_at", otp::FormatRfc3339(t.imported_at)},
         {"app_id", or_null(t.app_id)},
         {"user_id", or_null(t.user_id)},
         {"factor_id", or_null(t.factor_id)},
         {"revoked", t.revoked_at.has_value()}};
  if (t.type == "totp") j["period"] = t.period;
  if (t.revoked_at) j["revoked_at"] = otp::FormatRfc3339(*t.revoked_at);
  return j;
}

// What `token import` was asked to read, parsed before the store is opened.
struct TokenImportFlags {
  std::string pskc_file;
  std::string csv_file;
  std::string key_hex;
  std::string password;
  bool allow_plaintext = false;

  Result<std::vector<ImportedToken>> Parse(const CLI::App& cmd) const {
    const bool pskc = cmd.count("--pskc") > 0;
    const bool csv = cmd.count("--csv") > 0;
    if (pskc == csv) return otp::InvalidArgument("token import: give --pskc FILE or --csv FILE");
    if (csv) {
      if (cmd.count("--key") > 0 || cmd.count("--password") > 0 || allow_plaintext) {
        return otp::InvalidArgument(
            "token import: --key, --password and --allow-plaintext go with --pskc");
      }
      auto text = ReadFile(csv_file);
      if (!text.ok()) return text.status();
      return ParseTokenCsv(*text);
    }
    PskcOptions options;
    options.allow_plaintext = allow_plaintext;
    if (cmd.count("--key") > 0) {
      auto key = otp::HexDecode(key_hex);
      if (!key || key->size() != 16) {
        return otp::InvalidArgument("--key: the AES-128 key as 32 hex digits");
      }
      options.key = std::move(*key);
    }
    if (cmd.count("--password") > 0) options.password = password;
    auto text = ReadFile(pskc_file);
    if (!text.ok()) return text.status();
    return ParsePskc(*text, options);
  }
};

// A safe-list entry: '+' and 1..15 digits (a whole E.164 number or a prefix).
bool ValidSafeListEntry(std::string_view entry) {
  return entry.size() >= 2 && entry.size() <= 16 && entry.front() == '+' &&
         std::all_of(entry.begin() + 1, entry.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// `fraud status`: per app, its guard settings, every prefix and region with
// starts in the window, and the safe-list.
Result<json> FraudStatusJson(Store& store, const std::vector<App>& apps, otp::TimePoint now) {
  json out = json::array();
  for (const App& a : apps) {
    const FraudPolicy& p = a.settings.fraud;
    auto totals = store.ListFraudTotals(a.id, now - std::chrono::seconds(p.window_s));
    if (!totals.ok()) return totals.status();
    auto safe = store.ListSafeList(a.id);
    if (!safe.ok()) return safe.status();
    json prefixes = json::array();
    json regions = json::array();
    for (const FraudTotals& t : *totals) {
      const bool by_prefix = t.scope == kFraudScopePrefix;
      const int threshold = by_prefix ? p.prefix_threshold : p.region_threshold;
      std::string state = "ok";
      if (threshold == 0) {
        state = "not_judged";
      } else if (a.settings.sandbox || p.mode == "off") {
        state = "off";
      } else if (PumpingSuspected(t.starts, t.approvals, threshold, p)) {
        state = p.mode == "monitor" ? "flagged" : "blocked";
      }
      json row = {
          {by_prefix ? "prefix" : "region", t.key},
          {"starts", t.starts},
          {"approvals", t.approvals},
          {"conversion", t.starts > 0 ? std::round(1000.0 * t.approvals / t.starts) / 1000 : 0.0},
          {"state", state}};
      (by_prefix ? prefixes : regions).push_back(std::move(row));
    }
    json safe_list = json::array();
    for (const SafeListEntry& e : *safe) safe_list.push_back(e.entry);
    out.push_back({{"app_id", a.id},
                   {"name", a.name},
                   {"mode", a.settings.sandbox ? std::string("off (sandbox)") : p.mode},
                   {"window_s", p.window_s},
                   {"prefix_threshold", p.prefix_threshold},
                   {"region_threshold", p.region_threshold},
                   {"min_conversion_pct", p.min_conversion_pct},
                   {"prefixes", std::move(prefixes)},
                   {"regions", std::move(regions)},
                   {"safe_list", std::move(safe_list)}});
  }
  return out;
}

json AppJson(const App& app) {
  json settings = json::parse(AppSettingsToJson(app.settings));
  json j{{"app_id", app.id},
         {"name", app.name},
         {"workflow", WorkflowJson(app.settings.workflow)},
         {"settings", settings},
         {"webhook_disabled", app.webhook_disabled_at.has_value()},
         {"created_at", otp::FormatRfc3339(app.created_at)},
         {"updated_at", otp::FormatRfc3339(app.updated_at)}};
  if (app.webhook_disabled_at) {
    j["webhook_disabled_at"] = otp::FormatRfc3339(*app.webhook_disabled_at);
    j["webhook_disabled_reason"] = app.webhook_disabled_reason;
  }
  return j;
}

json AuditJson(const AuditEntry& a) {
  return json{{"id", a.id},         {"at", otp::FormatRfc3339(a.at)},
              {"app_id", a.app_id}, {"actor", a.actor},
              {"action", a.action}, {"subject", a.subject},
              {"result", a.result}, {"detail", a.detail}};
}

// One audit row of an admin action (SECURITY.md 32): who is "otpctl"; never a
// key, secret or code. The action is done already: a failure here only warns.
void Audit(Store& store, std::string_view app_id, std::string_view action, std::string_view subject,
           std::string_view result, std::string_view detail = "") {
  const Status s = store.AppendAudit(AuditEntry{0, otp::SystemClock().Now(), std::string(app_id),
                                                "otpctl", std::string(action), std::string(subject),
                                                std::string(result), std::string(detail)});
  if (!s.ok())
    std::cerr << "otpctl: warning: the audit row was not written: " << s.message() << "\n";
}

// Applies --allowed-countries / --blocked-countries values: "GR,CY" sets the
// app-wide list, "sms:GR,CY" a channel's own; an empty list clears it.
Status ApplyCountryFlags(const std::vector<std::string>& values, bool allowed,
                         GeoPermissions* geo) {
  for (const std::string& v : values) {
    const auto colon = v.find(':');
    CountryLists* lists = &geo->all;
    std::string_view regions = v;
    if (colon != std::string::npos) {
      const std::string channel = v.substr(0, colon);
      if (!IsKnownChannel(channel)) {
        return otp::InvalidArgument("countries: unknown channel '" + channel + "'");
      }
      lists = &geo->channels[channel];
      regions = std::string_view(v).substr(colon + 1);
    }
    (allowed ? lists->allowed : lists->blocked) = SplitCommaList(regions);
  }
  for (auto it = geo->channels.begin(); it != geo->channels.end();) {
    it = it->second == CountryLists{} ? geo->channels.erase(it) : std::next(it);
  }
  return Status::Ok();
}

// Options shared by `app create` and `app update`.
struct AppFlags {
  CLI::App* command = nullptr;  // where the flags were added (for Given)
  int starts_per_recipient = 0;
  int starts_window = 0;
  int starts_per_ip = 0;
  int ip_window = 0;
  int request_rate = 0;
  int request_burst = 0;
  bool sandbox = false;
  bool no_sandbox = false;
  std::vector<std::string> allowed_countries;
  std::vector<std::string> blocked_countries;
  std::string geo_mode;
  std::string fraud_mode;
  int fraud_threshold = 0;
  int fraud_region_threshold = 0;
  int fraud_min_conversion = 0;
  int fraud_window = 0;
  std::string workflow;
  int code_length = 0;
  int ttl = 0;
  int max_checks = 0;
  int max_sends = 0;
  int resend_cooldown = -1;
  int totp_window = -1;
  std::string webhook_url;
  bool webhook_url_set = false;
  std::vector<std::string> templates;       // channel:locale=TEXT ("" removes)
  std::vector<std::string> template_files;  // channel:locale=PATH

  void Add(CLI::App* cmd) {
    cmd->add_option("--template", templates,
                    "replace a message: channel:locale=TEXT (mustache with {{code}}; an empty "
                    "TEXT restores the built-in one); repeatable");
    cmd->add_option("--template-file", template_files,
                    "the same with the text read from a file: channel:locale=PATH; repeatable");
    cmd->add_option("--workflow", workflow,
                    "channels in order with timeouts, e.g. sms:60,voice:60");
    cmd->add_option("--code-length", code_length, "digits per code, 4..10 (default 6)");
    cmd->add_option("--ttl", ttl, "seconds a code stays valid, 60..86400 (default 600)");
    cmd->add_option("--max-checks", max_checks, "wrong codes allowed per verification (default 5)");
    cmd->add_option("--max-sends", max_sends, "sends per verification (default 5)");
    cmd->add_option("--resend-cooldown", resend_cooldown, "seconds between sends (default 30)");
    cmd->add_option("--totp-window", totp_window,
                    "TOTP steps accepted either side of now, 0..10 (default 1)");
    cmd->add_option("--webhook-url", webhook_url, "where events are POSTed");
    cmd->add_option("--starts-per-recipient", starts_per_recipient,
                    "starts per recipient per --starts-window, 1..1000 (default 5)");
    cmd->add_option("--starts-window", starts_window,
                    "seconds of the per-recipient window, 60..86400 (default 600)");
    cmd->add_option("--starts-per-ip", starts_per_ip,
                    "starts per end-user IP (the start's \"ip\") per --ip-window, 0 = off "
                    "(default 10)");
    cmd->add_option("--ip-window", ip_window,
                    "seconds of the per-IP window, 60..86400 (default 600)");
    cmd->add_option("--request-rate", request_rate,
                    "API requests per second for the app (token bucket shared by every node), "
                    "0 = off (default 100)");
    cmd->add_option("--request-burst", request_burst,
                    "the bucket's size: requests allowed at once (default 200)");
    auto* on = cmd->add_flag("--sandbox", sandbox,
                             "test mode: log providers only; no per-recipient/per-IP start "
                             "limits, resend cooldown or pumping guard");
    auto* off = cmd->add_flag("--no-sandbox", no_sandbox, "leave test mode");
    on->excludes(off);
    cmd->add_option("--allowed-countries", allowed_countries,
                    "only these regions (ISO 3166 alpha-2): GR,CY for every phone channel, "
                    "sms:GR,CY for one; empty clears; repeatable");
    cmd->add_option("--blocked-countries", blocked_countries,
                    "never these regions, same forms as --allowed-countries; repeatable");
    cmd->add_option("--geo-mode", geo_mode,
                    "block (403 country_blocked) or monitor (allowed and flagged); default block");
    cmd->add_option("--fraud-mode", fraud_mode,
                    "SMS-pumping guard: block, monitor or off (default block)");
    cmd->add_option("--fraud-threshold", fraud_threshold,
                    "starts to one number prefix per --fraud-window before its conversion "
                    "counts (default 30)");
    cmd->add_option("--fraud-region-threshold", fraud_region_threshold,
                    "the same per region; 0 = counted, never judged (default 0)");
    cmd->add_option("--fraud-min-conversion", fraud_min_conversion,
                    "approved/started percentage under which a prefix over its threshold is "
                    "blocked, 0..100 (default 20)");
    cmd->add_option("--fraud-window", fraud_window,
                    "sliding window of the guard in seconds, whole minutes, 60..86400 "
                    "(default 3600)");
    command = cmd;
  }

  bool Given(const char* flag) const { return command != nullptr && command->count(flag) > 0; }

  Status Apply(AppSettings* s) const {
    if (!workflow.empty()) {
      auto steps = ParseWorkflowSpec(workflow);
      if (!steps.ok()) return steps.status();
      s->workflow = *steps;
    }
    if (code_length != 0) s->code_length = code_length;
    if (ttl != 0) s->ttl_s = ttl;
    if (max_checks != 0) s->max_checks = max_checks;
    if (max_sends != 0) s->max_sends = max_sends;
    if (resend_cooldown >= 0) s->resend_cooldown_s = resend_cooldown;
    if (totp_window >= 0) s->totp_window = totp_window;
    if (webhook_url_set) s->webhook_url = webhook_url;
    if (Given("--starts-per-recipient")) s->starts_per_recipient = starts_per_recipient;
    if (Given("--starts-window")) s->starts_window_s = starts_window;
    if (Given("--starts-per-ip")) s->starts_per_ip = starts_per_ip;
    if (Given("--ip-window")) s->ip_window_s = ip_window;
    if (Given("--request-rate")) s->request_rate = request_rate;
    if (Given("--request-burst")) s->request_burst = request_burst;
    if (sandbox) s->sandbox = true;
    if (no_sandbox) s->sandbox = false;
    OTP_RETURN_IF_ERROR(ApplyCountryFlags(allowed_countries, true, &s->geo));
    OTP_RETURN_IF_ERROR(ApplyCountryFlags(blocked_countries, false, &s->geo));
    if (Given("--geo-mode")) s->geo.mode = geo_mode;
    if (Given("--fraud-mode")) s->fraud.mode = fraud_mode;
    if (Given("--fraud-threshold")) s->fraud.prefix_threshold = fraud_threshold;
    if (Given("--fraud-region-threshold")) s->fraud.region_threshold = fraud_region_threshold;
    if (Given("--fraud-min-conversion")) s->fraud.min_conversion_pct = fraud_min_conversion;
    if (Given("--fraud-window")) s->fraud.window_s = fraud_window;
    for (const std::string& t : templates) {
      const auto eq = t.find('=');
      if (eq == std::string::npos)
        return otp::InvalidArgument("--template: use channel:locale=TEXT");
      if (eq + 1 == t.size()) {
        s->templates.erase(t.substr(0, eq));
      } else {
        s->templates[t.substr(0, eq)] = t.substr(eq + 1);
      }
    }
    for (const std::string& t : template_files) {
      const auto eq = t.find('=');
      if (eq == std::string::npos) {
        return otp::InvalidArgument("--template-file: use channel:locale=PATH");
      }
      auto read = ReadFile(t.substr(eq + 1));
      if (!read.ok()) return otp::InvalidArgument("--template-file: " + read.status().message());
      std::string text = std::move(*read);
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      s->templates[t.substr(0, eq)] = text;
    }
    return ValidateAppSettings(*s);
  }
};

}  // namespace

int RunOtpctl(int argc, char** argv) {
  CLI::App cli{"otpctl: administer otpd apps, keys and codes"};
  cli.require_subcommand(1);
  std::string config_flag;
  cli.add_option("-c,--config", config_flag, "TOML config file (default: $OTPD_CONFIG)");

  auto* migrate = cli.add_subcommand("migrate", "create or upgrade the store's schema");

  auto* app = cli.add_subcommand("app", "manage apps (tenants)");
  app->require_subcommand(1);
  std::string app_name;
  std::string app_ref;
  AppFlags create_flags;
  auto* app_create = app->add_subcommand("create", "create an app and its first API key");
  app_create->add_option("NAME", app_name, "unique app name")->required();
  create_flags.Add(app_create);
  auto* app_list = app->add_subcommand("list", "list apps");
  auto* app_show = app->add_subcommand("show", "show one app");
  app_show->add_option("APP", app_ref, "app id or name")->required();
  AppFlags update_flags;
  std::string new_name;
  auto* app_update = app->add_subcommand("update", "change an app's settings");
  app_update->add_option("APP", app_ref, "app id or name")->required();
  app_update->add_option("--name", new_name, "new unique name");
  update_flags.Add(app_update);

  auto* key = cli.add_subcommand("key", "manage API keys");
  key->require_subcommand(1);
  std::string key_ref;
  auto* key_create = key->add_subcommand("create", "create another API key for an app");
  key_create->add_option("APP_ID", key_ref, "app id or name")->required();
  auto* key_revoke = key->add_subcommand("revoke", "revoke an API key at once");
  key_revoke->add_option("KEY_ID", key_ref, "key id (key_…)")->required();

  auto* user = cli.add_subcommand("user", "manage an app's end users (token checks)");
  user->require_subcommand(1);
  std::string user_app;
  std::string user_id;
  auto* user_unlock = user->add_subcommand(
      "unlock", "clear a user's lock, delay and failure count after failed token checks");
  user_unlock->add_option("APP", user_app, "app id or name")->required();
  user_unlock->add_option("USER", user_id, "the app's user id")->required();

  auto* fraud = cli.add_subcommand("fraud", "the SMS-pumping guard: state and safe-list");
  fraud->require_subcommand(1);
  std::string fraud_app;
  std::string fraud_entry;
  auto* fraud_status = fraud->add_subcommand(
      "status", "prefixes and regions with starts, approvals, conversion and state");
  fraud_status->add_option("--app", fraud_app, "one app (id or name); default every app");
  auto* fraud_allow = fraud->add_subcommand(
      "allow", "safe-list a number or prefix: never judged or counted by the guard");
  fraud_allow->add_option("APP", fraud_app, "app id or name")->required();
  fraud_allow->add_option("NUMBER_OR_PREFIX", fraud_entry, "E.164 number or a prefix of one")
      ->required();
  auto* fraud_disallow = fraud->add_subcommand("disallow", "remove a safe-list entry");
  fraud_disallow->add_option("APP", fraud_app, "app id or name")->required();
  fraud_disallow->add_option("NUMBER_OR_PREFIX", fraud_entry, "the entry as safe-listed")
      ->required();

  auto* code = cli.add_subcommand("code", "print a TOTP/HOTP code, like oathtool");
  code->require_subcommand(1);
  std::string secret_b32;
  std::string algorithm = "SHA1";
  int digits = 6;
  std::uint64_t counter = 0;
  std::int64_t at_time = -1;
  int period = 30;
  auto* code_hotp = code->add_subcommand("hotp", "HOTP code (RFC 4226)");
  code_hotp->add_option("--secret", secret_b32, "base32 secret")->required();
  code_hotp->add_option("--counter", counter, "counter value")->required();
  code_hotp->add_option("--digits", digits, "6..10 (default 6)");
  code_hotp->add_option("--algorithm", algorithm, "SHA1, SHA256 or SHA512 (default SHA1)");
  auto* code_totp = code->add_subcommand("totp", "TOTP code (RFC 6238)");
  code_totp->add_option("--secret", secret_b32, "base32 secret")->required();
  code_totp->add_option("--time", at_time, "unix seconds (default now)");
  code_totp->add_option("--period", period, "seconds per step (default 30)");
  code_totp->add_option("--digits", digits, "6..10 (default 6)");
  code_totp->add_option("--algorithm", algorithm, "SHA1, SHA256 or SHA512 (default SHA1)");

  auto* master_key = cli.add_subcommand("master-key", "rotate the master key, show key status");
  master_key->require_subcommand(1);
  auto* master_key_rotate = master_key->add_subcommand(
      "rotate", "write a new master key and re-wrap every sealed secret under it");
  auto* master_key_status =
      master_key->add_subcommand("status", "show the master keys and what each one seals");
  auto* token = cli.add_subcommand("token", "hardware tokens: import seed files, list, revoke");
  token->require_subcommand(1);
  TokenImportFlags import_flags;
  auto* token_import =
      token->add_subcommand("import", "import a vendor's seed file; all its tokens or none");
  auto* pskc_option =
      token_import->add_option("--pskc", import_flags.pskc_file, "PSKC file (RFC 6030)");
  auto* csv_option = token_import->add_option(
      "--csv", import_flags.csv_file, "CSV file: serial,secret_hex,type,digits,period_or_counter");
  pskc_option->excludes(csv_option);
  auto* key_option = token_import->add_option(
      "--key", import_flags.key_hex, "the PSKC file's pre-shared AES-128 key, 32 hex digits");
  auto* password_option = token_import->add_option("--password", import_flags.password,
                                                   "the PSKC file's password (PBKDF2)");
  key_option->excludes(password_option);
  token_import->add_flag("--allow-plaintext", import_flags.allow_plaintext,
                         "accept a PSKC file whose secrets are not encrypted");
  bool unassigned_only = false;
  auto* token_list = token->add_subcommand("list", "list hardware tokens (never their secrets)");
  token_list->add_flag("--unassigned", unassigned_only, "only tokens neither bound nor revoked");
  std::string token_serial;
  auto* token_revoke =
      token->add_subcommand("revoke", "revoke a token: it can no longer be bound or used");
  token_revoke->add_option("SERIAL", token_serial, "the token's serial")->required();

  auto* webhook = cli.add_subcommand("webhook", "an app's webhook endpoint");
  webhook->require_subcommand(1);
  std::string webhook_app;
  auto* webhook_test =
      webhook->add_subcommand("test", "send a signed ping event to the app's webhook_url now");
  webhook_test->add_option("APP", webhook_app, "app id or name")->required();

  auto* audit = cli.add_subcommand("audit", "the append-only audit trail");
  audit->require_subcommand(1);
  std::string audit_app;
  int audit_count = 20;
  auto* audit_tail =
      audit->add_subcommand("tail", "print the newest audit rows, oldest first, as JSON lines");
  audit_tail->add_option("--app", audit_app, "only this app's rows (id or name)");
  audit_tail->add_option("-n", audit_count, "how many rows (default 20, at most 10000)")
      ->check(CLI::Range(1, 10000));

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }
  create_flags.webhook_url_set = app_create->count("--webhook-url") > 0;
  update_flags.webhook_url_set = app_update->count("--webhook-url") > 0;

  // Codes need no store.
  if (*code) {
    auto secret = otp::Base32Decode(secret_b32);
    if (!secret.ok() || secret->empty()) return Error("--secret: not valid base32");
    auto alg = otp::ParseHashAlgorithm(algorithm);
    if (!alg.ok()) return Error("--algorithm: use SHA1, SHA256 or SHA512");
    if (digits < 6 || digits > 10) return Error("--digits: 6..10");
    auto k = otp::HotpKey::Create(*secret, *alg);
    if (!k.ok()) return Error(k.status().message());
    if (*code_hotp) {
      std::cout << k->Generate(counter, digits) << "\n";
    } else {
      if (period < 1 || period > 3600) return Error("--period: 1..3600");
      const std::int64_t t = at_time >= 0 ? at_time : otp::ToUnixSeconds(otp::SystemClock().Now());
      std::cout << otp::TotpGenerate(*k, t, otp::TotpParams{digits, period, 0}) << "\n";
    }
    return 0;
  }

  // A seed file is read and checked whole before the store is opened.
  std::vector<ImportedToken> imported;
  if (*token_import) {
    auto parsed = import_flags.Parse(*token_import);
    if (!parsed.ok()) return Error(parsed.status().message());
    imported = std::move(*parsed);
  }

  auto config = LoadConfig(ConfigPathFrom(config_flag));
  if (!config.ok()) return Error(config.status().message());
  auto store = OpenStore(config->store_url);  // migrates
  if (!store.ok()) return Error(store.status().message());
  if (*migrate) {
    std::cout << json{{"migrated", true}}.dump() << "\n";
    return 0;
  }
  if (*master_key_rotate) {
    auto report = RotateAndRewrap(config->master_key_file, **store, otp::SystemRandom());
    if (!report.ok()) {
      Audit(**store, "", "master_key.rotate", "", "failed", report.status().message());
      return Error(report.status().message());
    }
    Audit(**store, "", "master_key.rotate", report->new_key_id, "done",
          "from " + report->old_key_id + ", " + std::to_string(report->rewrapped) + " re-wrapped");
    std::cout << json{{"old_key_id", report->old_key_id},
                      {"new_key_id", report->new_key_id},
                      {"rewrapped", report->rewrapped}}
                     .dump()
              << "\n";
    return 0;
  }
  if (*master_key_status) {
    auto st = GetMasterKeyStatus(config->master_key_file, **store);
    if (!st.ok()) return Error(st.status().message());
    json key_ids = json::array();
    for (const auto& [id, k] : st->keys.keys) key_ids.push_back(id);
    std::cout << json{{"primary_key_id", st->keys.primary_id},
                      {"code_hash_key_id", st->keys.code_hash_key_id},
                      {"key_ids", key_ids},
                      {"sealed_by_key_id", st->sealed_by_key_id}}
                     .dump()
              << "\n";
    return 0;
  }
  AppService apps(**store, otp::SystemClock(), otp::SystemRandom());

  if (*app_create) {
    AppSettings settings;
    Status s = create_flags.Apply(&settings);
    if (!s.ok()) return Error(s.message());
    auto created = apps.Create(app_name, settings);
    if (!created.ok()) {
      if (created.status().code() == otp::StatusCode::kAlreadyExists) {
        return Error("an app named '" + app_name + "' already exists");
      }
      return Error(created.status().message());
    }
    Audit(**store, created->app.id, "app.create", created->app.id, "done",
          "name " + created->app.name + ", key " + created->key_id);
    std::cout << json{{"app_id", created->app.id},
                      {"api_key", created->api_key},
                      {"webhook_secret", created->app.webhook_secret}}
                     .dump()
              << "\n";
    return 0;
  }
  if (*app_list) {
    auto list = (*store)->ListApps();
    if (!list.ok()) return Error(list.status().message());
    json out = json::array();
    for (const App& a : *list) out.push_back(AppJson(a));
    std::cout << out.dump() << "\n";
    return 0;
  }
  if (*app_show || *app_update) {
    auto found = (*store)->GetApp(app_ref);
    if (!found.ok()) return Error("no app '" + app_ref + "'");
    App a = *found;
    if (*app_update) {
      Status s = update_flags.Apply(&a.settings);
      if (!s.ok()) return Error(s.message());
      if (!new_name.empty()) {
        s = ValidateAppName(new_name);
        if (!s.ok()) return Error(s.message());
        a.name = new_name;
      }
      a.updated_at = otp::SystemClock().Now();
      s = (*store)->UpdateApp(a);
      if (!s.ok()) return Error(s.message());
      // What changed, by setting name (never the values: a URL may carry a token).
      std::string changed = a.name != found->name ? "name" : "";
      const json before = json::parse(AppSettingsToJson(found->settings));
      const json after = json::parse(AppSettingsToJson(a.settings));
      for (const auto& [k, v] : after.items()) {
        if (before.value(k, json()) != v) changed += (changed.empty() ? "" : ", ") + k;
      }
      if (update_flags.webhook_url_set && a.webhook_disabled_at) {
        // A URL given again enables an endpoint a 410 disabled.
        s = (*store)->EnableWebhook(a.id);
        if (!s.ok()) return Error(s.message());
        a.webhook_disabled_at.reset();
        a.webhook_disabled_reason.clear();
        changed += (changed.empty() ? "" : ", ") + std::string("webhook enabled again");
      }
      Audit(**store, a.id, "app.update", a.id, "done", changed);
    }
    std::cout << AppJson(a).dump() << "\n";
    return 0;
  }
  if (*key_create) {
    auto found = (*store)->GetApp(key_ref);
    if (!found.ok()) return Error("no app '" + key_ref + "'");
    auto k = apps.CreateKey(found->id);
    if (!k.ok()) return Error(k.status().message());
    Audit(**store, found->id, "key.create", k->key_id, "done");
    std::cout << json{{"key_id", k->key_id}, {"api_key", k->api_key}}.dump() << "\n";
    return 0;
  }
  if (*token_import) {
    auto secrets = Secrets::Load(config->master_key_file);
    if (!secrets.ok()) return Error(secrets.status().message());
    auto count = SealAndImportHardwareTokens(**store, (*secrets)->keyring, otp::SystemRandom(),
                                             otp::SystemClock().Now(), imported);
    if (!count.ok()) {
      Audit(**store, "", "token.import", "", "refused", count.status().message());
      return Error(count.status().message());
    }
    Audit(**store, "", "token.import", "", "done", std::to_string(*count) + " tokens");
    std::cout << json{{"imported", *count}}.dump() << "\n";
    return 0;
  }
  if (*token_list) {
    auto list = (*store)->ListHardwareTokens(unassigned_only);
    if (!list.ok()) return Error(list.status().message());
    json out = json::array();
    for (const HardwareToken& t : *list) out.push_back(TokenJson(t));
    std::cout << out.dump() << "\n";
    return 0;
  }
  if (*token_revoke) {
    Status s = (*store)->RevokeHardwareToken(token_serial, otp::SystemClock().Now());
    if (s.code() == otp::StatusCode::kNotFound) return Error("no token '" + token_serial + "'");
    if (!s.ok()) return Error(s.message());
    Audit(**store, "", "token.revoke", "token:" + token_serial, "done");
    std::cout << json{{"serial", token_serial}, {"revoked", true}}.dump() << "\n";
    return 0;
  }
  if (*user_unlock) {
    auto found = (*store)->GetApp(user_app);
    if (!found.ok()) return Error("no app '" + user_app + "'");
    auto was_locked = (*store)->UnlockUser(found->id, user_id, "otpctl", otp::SystemClock().Now());
    if (!was_locked.ok()) return Error(was_locked.status().message());
    std::cout << json{{"app_id", found->id},
                      {"user", user_id},
                      {"was_locked", *was_locked},
                      {"unlocked", true}}
                     .dump()
              << "\n";
    return 0;
  }
  if (*fraud_status) {
    std::vector<App> list;
    if (!fraud_app.empty()) {
      auto found = (*store)->GetApp(fraud_app);
      if (!found.ok()) return Error("no app '" + fraud_app + "'");
      list.push_back(*found);
    } else {
      auto all = (*store)->ListApps();
      if (!all.ok()) return Error(all.status().message());
      list = std::move(*all);
    }
    auto status = FraudStatusJson(**store, list, otp::SystemClock().Now());
    if (!status.ok()) return Error(status.status().message());
    std::cout << status->dump() << "\n";
    return 0;
  }
  if (*fraud_allow || *fraud_disallow) {
    auto found = (*store)->GetApp(fraud_app);
    if (!found.ok()) return Error("no app '" + fraud_app + "'");
    if (!ValidSafeListEntry(fraud_entry)) {
      return Error("NUMBER_OR_PREFIX: '+' and 1..15 digits, e.g. +306912345678 or +3069123");
    }
    const otp::TimePoint now = otp::SystemClock().Now();
    Status s = *fraud_allow ? (*store)->AddSafeListEntry({found->id, fraud_entry, now})
                            : (*store)->RemoveSafeListEntry(found->id, fraud_entry);
    if (s.code() == otp::StatusCode::kNotFound) return Error(fraud_entry + " is not safe-listed");
    if (!s.ok()) return Error(s.message());
    (void)(*store)->AppendAudit(AuditEntry{0, now, found->id, "otpctl",
                                           *fraud_allow ? "fraud.allow" : "fraud.disallow",
                                           "entry:" + fraud_entry, "ok", ""});
    std::cout << json{{"app_id", found->id},
                      {"entry", fraud_entry},
                      {"safe_listed", static_cast<bool>(*fraud_allow)}}
                     .dump()
              << "\n";
    return 0;
  }
  if (*key_revoke) {
    Status s = apps.RevokeKey(key_ref);
    if (!s.ok()) return Error("no key '" + key_ref + "'");
    Audit(**store, "", "key.revoke", key_ref, "done");
    std::cout << json{{"key_id", key_ref}, {"revoked", true}}.dump() << "\n";
    return 0;
  }
  if (*webhook_test) {
    auto found = (*store)->GetApp(webhook_app);
    if (!found.ok()) return Error("no app '" + webhook_app + "'");
    if (found->settings.webhook_url.empty()) {
      return Error("app '" + webhook_app +
                   "' has no webhook_url (otpctl app update --webhook-url)");
    }
    const otp::TimePoint now = otp::SystemClock().Now();
    const std::string body =
        json{{"type", "ping"},
             {"timestamp", otp::FormatRfc3339(now)},
             {"data", {{"app_id", found->id}, {"message", "otpctl webhook test"}}}}
            .dump();
    const WebhookMessage message{found->settings.webhook_url, found->webhook_secret,
                                 "ping_" + otp::RandomHex(otp::SystemRandom(), 12), body};
    auto transport = NewCurlWebhookTransport();
    const WebhookSendResult sent =
        SendWebhook(message, now, config->webhooks, *transport, SystemResolver());
    Audit(**store, found->id, "webhook.test", message.id, sent.delivered ? "delivered" : "failed",
          sent.delivered ? "HTTP " + std::to_string(sent.http_status) : sent.error);
    if (sent.http_status == 0) return Error("webhook test: " + sent.error);
    std::cout << json{{"status", sent.http_status}, {"delivered", sent.delivered}}.dump() << "\n";
    return sent.delivered ? 0 : 1;
  }
  if (*audit_tail) {
    std::string app_id;
    if (!audit_app.empty()) {
      auto found = (*store)->GetApp(audit_app);
      if (!found.ok()) return Error("no app '" + audit_app + "'");
      app_id = found->id;
    }
    auto rows = (*store)->ListAudit(app_id, audit_count);
    if (!rows.ok()) return Error(rows.status().message());
    for (const AuditEntry& a : *rows) {
      std::cout << AuditJson(a).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    }
    return 0;
  }
  return 2;
}

}  // namespace otpd
