// Every code of the header reaches Swift as its `ErrorCode` with the library's message; the
// panic path; and the Swift enum lists exactly the header's codes (read from the header file).

import CApoyoSync
import Foundation
import XCTest
@testable import ApoyoSync

final class ErrorMappingTests: XCTestCase {
    func testEveryCodeIsThrownAsItsCase() {
        for code in ErrorCode.allCases {
            let e = assertThrows(code, try check(apoyo_testing_fail(code.rawValue)))
            XCTAssertEqual(e?.rawCode, code.rawValue)
        }
        XCTAssertNoThrow(try check(apoyo_testing_fail(0)))
        assertThrows(.invalidArgument, try check(apoyo_testing_fail(77)))
    }

    func testCatchByCode() {
        do {
            try check(apoyo_testing_fail(ErrorCode.duplicate.rawValue))
            XCTFail("no error")
        } catch let e as ApoyoError where e.code == .duplicate {
            // matched by code
        } catch {
            XCTFail("not matched as .duplicate: \(error)")
        }
    }

    func testAnUnknownNumberIsInternalAndKeepsIt() {
        let e = ApoyoError(code: ErrorCode(rawValue: 5000) ?? .internal, rawCode: 5000, message: "x")
        XCTAssertEqual(e.code, .internal)
        XCTAssertEqual(e.rawCode, 5000)
    }

    func testPanicIsCaughtAndTheLibraryKeepsWorking() {
        let e = assertThrows(.panic, try check(apoyo_testing_panic()))
        XCTAssertTrue(e?.message.contains("panicked") ?? false, e?.message ?? "")
        XCTAssertNoThrow(try check(apoyo_testing_fail(0)))
        XCTAssertEqual(lastErrorMessage(), "", "a success clears the message")
        XCTAssertTrue(SyncEngine.version.hasPrefix("0."), SyncEngine.version)
    }

    func testSwiftEnumMatchesTheHeader() throws {
        let header = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("include/apoyo_sync.h")
        let text = try String(contentsOf: header, encoding: .utf8)
        var numbers: Set<Int32> = []
        for line in text.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("APOYO_CODE_"), let eq = t.firstIndex(of: "=") else { continue }
            let n = t[t.index(after: eq)...].trimmingCharacters(in: CharacterSet(charactersIn: " ,"))
            if let v = Int32(n), v != 0 { numbers.insert(v) }
        }
        XCTAssertGreaterThan(numbers.count, 30, "parsed \(numbers.count) codes from the header")
        XCTAssertEqual(Set(ErrorCode.allCases.map(\.rawValue)), numbers)
    }

    func testKinds() {
        XCTAssertEqual(ErrorCode.duplicate.kind, .input)
        XCTAssertEqual(ErrorCode.wrongDevice.kind, .key)
        XCTAssertEqual(ErrorCode.storeBusy.kind, .store)
        XCTAssertEqual(ErrorCode.engineClosed.kind, .engine)
        XCTAssertEqual(ErrorCode.panic.kind, .bug)
    }
}
