#include "channels/smpp/receipt.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "store/model.h"

namespace otpd::smpp {
namespace {

std::string Upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

// The value of `key:` in `text` (case-insensitive, at the start or after a
// space), up to the next space; nullopt when the key is absent.
std::optional<std::string_view> Field(std::string_view text, std::string_view key) {
  const std::string upper = Upper(text);
  const std::string want = Upper(key) + ":";
  for (std::size_t pos = upper.find(want); pos != std::string::npos;
       pos = upper.find(want, pos + 1)) {
    if (pos != 0 && upper[pos - 1] != ' ') continue;
    const std::size_t start = pos + want.size();
    std::size_t end = text.find(' ', start);
    if (end == std::string_view::npos) end = text.size();
    return text.substr(start, end - start);
  }
  return std::nullopt;
}

// message_state TLV values (SMPP 3.4 §5.2.28) as the receipt's stat words.
constexpr std::array<const char*, 9> kStates = {
    "", "ENROUTE", "DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD"};

}  // namespace

std::optional<Receipt> ParseReceiptText(std::string_view text) {
  // "text:" is last and free-form: nothing in it may pass for a field.
  const std::string upper = Upper(text);
  for (std::size_t pos = upper.find("TEXT:"); pos != std::string::npos;
       pos = upper.find("TEXT:", pos + 1)) {
    if (pos == 0 || upper[pos - 1] == ' ') {
      text = text.substr(0, pos);
      break;
    }
  }
  auto id = Field(text, "id");
  auto stat = Field(text, "stat");
  if (!id || !stat || id->empty() || stat->empty()) return std::nullopt;
  Receipt r;
  r.message_id = std::string(*id);
  r.stat = Upper(*stat);
  if (auto err = Field(text, "err")) r.err = std::string(*err);
  return r;
}

std::optional<Receipt> ParseReceipt(const Pdu& pdu) {
  if (pdu.command_id != kDeliverSm) return std::nullopt;
  if ((pdu.esm_class & kEsmClassTypeMask) != kEsmClassDeliveryReceipt) return std::nullopt;
  std::string_view text = pdu.short_message;
  if (text.empty()) {
    if (auto payload = pdu.FindTlv(kTagMessagePayload)) text = *payload;
  }
  std::optional<Receipt> r = ParseReceiptText(text);
  if (auto id = pdu.FindTlv(kTagReceiptedMessageId)) {
    // A C-octet string in the TLV: drop the NUL and anything after it.
    std::string_view v = *id;
    v = v.substr(0, v.find('\0'));
    if (!v.empty()) {
      if (!r) r = Receipt{};
      r->message_id = std::string(v);
    }
  }
  if (auto state = pdu.FindTlv(kTagMessageState); state && state->size() == 1) {
    const auto s = static_cast<unsigned char>((*state)[0]);
    if (s >= 1 && s < kStates.size()) {
      if (!r) r = Receipt{};
      r->stat = kStates[s];
    }
  }
  if (!r || r->message_id.empty() || r->stat.empty()) return std::nullopt;
  return r;
}

std::string DeliveryStatusForStat(std::string_view stat) {
  const std::string s = Upper(stat);
  if (s == "DELIVRD") return kDeliveryDelivered;
  if (s == "UNDELIV" || s == "EXPIRED" || s == "DELETED" || s == "UNKNOWN") {
    return kDeliveryUndelivered;
  }
  if (s == "REJECTD") return kDeliveryFailed;
  return "";
}

}  // namespace otpd::smpp
