#include "cli/otpctl.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

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

// Options shared by `app create` and `app update`.
struct AppFlags {
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
  }

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
