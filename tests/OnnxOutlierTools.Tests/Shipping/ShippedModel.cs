using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.IO;

namespace OnnxOutlierTools.Tests.Shipping;

/// <summary>What a shipped model was found to be: each check's outcome in words (for test output).</summary>
public sealed record ShippingVerdict(string Model, string Runtime, string Checker, string Layout)
{
    public override string ToString() => $"{Path.GetFileName(Model)}: ORT {Runtime}; checker {Checker}; {Layout}";
}

/// <summary>
/// The checks every model the tool writes goes through in tests (issue 10, shipping): it loads in ONNX Runtime
/// (CPU, all graph optimizations, as deployments run it) and runs once on synthesized inputs; it passes
/// <c>onnx.checker.check_model(full_check=True)</c> (python3-onnx, on a private copy: onnx 1.12 writes back into
/// the path) where its opset allows (ai.onnx &lt;= 17, IR &lt;= 8; ORT's contrib ops registered in the default
/// domain relabelled first, see <see cref="OnnxPython.Request"/>); and a large model keeps its weights in external
/// data (at least <see cref="LargeBytes"/> of tensors: under a tenth of those bytes embedded in the .onnx).
/// <see cref="Require"/> asserts all three; without python3-onnx the checker part says so instead of passing.
/// </summary>
public static class ShippedModel
{
    /// <summary>From this size of tensor data on, a shipped model must keep it in external data.</summary>
    public const long LargeBytes = 1 << 20;

    public static ShippingVerdict Require(string modelPath, bool checker = true)
    {
        string runtime = LoadsAndRuns(modelPath);
        string layout = KeepsExternalDataWhenLarge(modelPath);
        string verdict = checker ? PassesChecker(modelPath) : "not asked";
        return new ShippingVerdict(modelPath, runtime, verdict, layout);
    }

    /// <summary>A CPU session with ORT_ENABLE_ALL and one run of every output on synthesized inputs (batch 1, 4 tokens, past 3).</summary>
    public static string LoadsAndRuns(string modelPath)
    {
        using var session = SessionFactory.Open(modelPath, new SessionSettings { Device = ExecutionDevice.Cpu });
        var dims = new Dictionary<string, long>(StringComparer.Ordinal)
        {
            ["batch_size"] = 1, ["batch"] = 1, ["sequence_length"] = 4, ["seq_len"] = 4, ["past_sequence_length"] = 3, ["total_sequence_length"] = 7,
        };
        var inputs = session.SynthesizeInputs(new InputSynthesisOptions { Dims = dims, IdUpperBound = 200 });
        var outputs = session.Run(inputs);
        Assert.Equal(session.OutputNames.Count, outputs.Count);
        return $"ran {outputs.Count} output(s)";
    }

    public static string PassesChecker(string modelPath)
    {
        if (OnnxPython.Executable is null) return $"not run: {OnnxPython.UnavailableReason}";
        using (var model = ModelReader.Load(modelPath))
        {
            long opset = model.OpsetVersion("") ?? 1;
            if (opset > 17 || model.IrVersion > 8) return $"not applicable: ai.onnx opset {opset}, IR {model.IrVersion} (onnx 1.12 checks opset <= 17, IR <= 8)";
        }
        var verdict = OnnxPython.Check(new OnnxPython.Request(modelPath, FullCheck: true, RelabelUnknownDefaultDomainOps: true))[0];
        Assert.True(verdict.Ok, $"{modelPath}: onnx checker (full_check): {verdict}");
        return verdict.ToString();
    }

    public static string KeepsExternalDataWhenLarge(string modelPath)
    {
        long tensorBytes, embeddedBytes;
        using (var model = ModelReader.Load(modelPath))
        {
            var tensors = model.Graph.SelfAndSubgraphs().SelectMany(g => g.Initializers).Select(v => v.ConstValue!).ToArray();
            tensorBytes = tensors.Sum(t => t.ByteLength);
            embeddedBytes = tensors.Where(t => t.Storage != Tensors.TensorStorage.External).Sum(t => t.ByteLength);
        }
        if (tensorBytes < LargeBytes) return $"{tensorBytes} bytes of tensors (small: any layout)";
        Assert.True(embeddedBytes < tensorBytes / 10, $"{modelPath}: {embeddedBytes} of {tensorBytes} tensor bytes embedded in the protobuf: large weights must be in external data");
        return $"{tensorBytes} bytes of tensors, {embeddedBytes} embedded (external data kept)";
    }
}
