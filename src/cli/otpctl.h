// otpctl: the admin CLI (SPEC §3, §4.2). Works on the same config and store as
// otpd; prints JSON on stdout for machine use, errors on stderr.
#pragma once

namespace otpd {

// Runs one otpctl command line; returns the process exit code (0 ok, 1 error,
// 2 usage).
int RunOtpctl(int argc, char** argv);

}  // namespace otpd
