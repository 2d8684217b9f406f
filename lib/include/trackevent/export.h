/*
 * export.h: TRACKEVENT_API marks what libtrackevent.so exports (C99 and C++).
 *
 * The library is built with hidden visibility, so only what carries this macro is visible to
 * programs that link it: the C++ API of these headers and the C ABI of trackevent.h. Everything
 * else (lib/src) stays internal and may change in any release.
 */
#ifndef TRACKEVENT_EXPORT_H
#define TRACKEVENT_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define TRACKEVENT_API __attribute__((visibility("default")))
#else
#define TRACKEVENT_API
#endif

#endif /* TRACKEVENT_EXPORT_H */
