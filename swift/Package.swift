// swift-tools-version:5.9
// The ApoyoSync Swift package: the iOS app's API over the C ABI of apoyo-sync
// (include/apoyo_sync.h + the static library libapoyo_sync_ffi.a built from bridge/ffi).
//
// Two ways to get the C library:
// - `CApoyoSync.xcframework` next to this file (made by scripts/build-ios.sh on macOS): the app
//   build links it as a binary target (iOS device + simulator slices).
// - otherwise a system-library module over ../include/apoyo_sync.h; the linker must be told
//   where libapoyo_sync_ffi.a is (`swift test -Xlinker -L<cargo target dir>`), as
//   scripts/test-swift.sh does for the XCTest run on Linux.
import Foundation
import PackageDescription

let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let xcframework = here.appendingPathComponent("CApoyoSync.xcframework")
let cModule: Target = FileManager.default.fileExists(atPath: xcframework.path)
    ? .binaryTarget(name: "CApoyoSync", path: "CApoyoSync.xcframework")
    : .systemLibrary(name: "CApoyoSync", path: "Sources/CApoyoSync")

let package = Package(
    name: "ApoyoSync",
    platforms: [.iOS(.v13), .macOS(.v10_15)],
    products: [.library(name: "ApoyoSync", targets: ["ApoyoSync"])],
    targets: [
        cModule,
        .target(
            name: "ApoyoSync",
            dependencies: ["CApoyoSync"],
            linkerSettings: [
                .linkedLibrary("apoyo_sync_ffi"),
                // What a Rust static library needs from the system on Linux.
                .linkedLibrary("m", .when(platforms: [.linux])),
                .linkedLibrary("dl", .when(platforms: [.linux])),
                .linkedLibrary("pthread", .when(platforms: [.linux])),
                .linkedLibrary("gcc_s", .when(platforms: [.linux])),
            ]
        ),
        .testTarget(name: "ApoyoSyncTests", dependencies: ["ApoyoSync", "CApoyoSync"]),
    ]
)
