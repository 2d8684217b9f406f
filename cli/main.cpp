// The trackevent CLI: everything lives in app.cpp, the commands and the library.
#include "app.hpp"

int main(int argc, char** argv) { return trackevent::cli::run(argc, argv); }
