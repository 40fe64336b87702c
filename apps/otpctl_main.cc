// otpctl: the admin CLI of otpd.
#include "cli/otpctl.h"

int main(int argc, char** argv) { return otpd::RunOtpctl(argc, argv); }
