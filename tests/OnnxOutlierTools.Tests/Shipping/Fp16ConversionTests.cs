using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes.Fp16;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tensors;
using OnnxOutlierTools.Tests.Cli;
using OnnxOutlierTools.Tests.Import;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Shipping;

/// <summary><c>convert --fp16</c>: the converted model runs in ORT CPU, its logits are close to the float32 model's
/// (measured and printed; loose bounds: fp16 keeps ~3 significant digits), it passes the onnx checker, and the
/// precision-critical ops stay float32.</summary>
public sealed class Fp16ConversionTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _temp = new("fp16");

    public static TheoryData<string> Models => ["stories260K-past", "stories260K-genai-gqa", "planted-decomposed", "llama-torch-past"];

    private string Source(string name) => name switch
    {
        "stories260K-past" => Import("decomposed-past"),
        "stories260K-genai-gqa" => Import("genai-gqa"),
        "planted-decomposed" => RepositoryFiles.Path("onnx-models", "planted-llama-decomposed", "model.onnx"),
        "llama-torch-past" => Stories260K.TorchPast,
        _ => throw new ArgumentException(name),
    };

    private string Import(string flavour)
    {
        string folder = _temp.Path(flavour);
        var r = CliRunner.Run("import-llama2c", Stories260K.CheckpointPath, "-o", folder, "--flavour", flavour);
        Assert.True(r.ExitCode == 0, r.ToString());
        return Path.Combine(folder, "model.onnx");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Converted_RunsInOrtCpu_CloseToFloat32_AndPassesTheChecker(string name)
    {
        string source = Source(name), converted = _temp.Path("out", name + ".fp16.onnx");
        Directory.CreateDirectory(_temp.Path("out"));
        var r = CliRunner.Run("convert", source, "-o", converted, "--fp16", "--external-data");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("note: fp16:", r.Stderr);
        output.WriteLine(r.Stderr.Trim());

        var verdict = ShippedModel.Require(converted);
        output.WriteLine(verdict.ToString());
        using (var model = ModelReader.Load(converted))
        {
            // Weights are float16 now; nothing float32 is left but what the kept ops need.
            Assert.DoesNotContain(model.Graph.Initializers, v => v.ConstValue!.DataType == TensorDataType.Float && v.ConstValue.ElementCount > 64);
            Assert.Contains(model.Graph.Initializers, v => v.ConstValue!.DataType == TensorDataType.Float16);
            foreach (var softmax in model.Graph.Nodes.Where(n => n.Is("Softmax")))
                Assert.True(softmax.Input(0)!.Producer is { OpType: "Cast" } cast && cast.GetInt("to", 0) == (long)TensorDataType.Float, $"{softmax.Name} reads float16");
        }
        Assert.True(new FileInfo(converted + ".data").Length < new FileInfo(source).Length + (File.Exists(source + ".data") ? new FileInfo(source + ".data").Length : 0));

        var closeness = Compare(source, converted);
        output.WriteLine($"{name}: {closeness}");
        Assert.True(closeness.RelativeMaxDiff < 0.05, closeness.ToString());
        Assert.True(closeness.Top1Agreement >= 0.9, closeness.ToString());
    }

    [Fact]
    public void Fp16Io_ConvertsInputsOutputsAndCaches_AndStillRuns()
    {
        string source = Import("decomposed-past"), converted = _temp.Path("io.fp16.onnx");
        var r = CliRunner.Run("convert", source, "-o", converted, "--fp16", "--fp16-io", "--external-data");
        Assert.True(r.ExitCode == 0, r.ToString());
        using (var model = ModelReader.Load(converted))
        {
            Assert.Equal(TensorDataType.Float16, model.Graph.Inputs.Single(v => v.Name == "past_key_values.0.key").ElementType);
            Assert.Equal(TensorDataType.Float16, model.Graph.Outputs.Single(v => v.Name == "logits").ElementType);
        }
        ShippedModel.Require(converted);
        var closeness = Compare(source, converted);
        output.WriteLine(closeness.ToString());
        Assert.True(closeness.RelativeMaxDiff < 0.05, closeness.ToString());
    }

    [Fact]
    public void BadInput_IsOneLine()
    {
        string source = Import("decomposed");
        string once = _temp.Path("once.onnx");
        Assert.Equal(0, CliRunner.Run("convert", source, "-o", once, "--fp16").ExitCode);
        var twice = CliRunner.Run("convert", once, "-o", _temp.Path("twice.onnx"), "--fp16");
        Assert.Equal(2, twice.ExitCode);
        Assert.Equal([$"error: {once}: cannot convert to fp16: the model was converted to fp16 already (metadata onnx_outliers.fp16)"], twice.StderrLines);
        Assert.False(File.Exists(_temp.Path("twice.onnx")));
        string fp16Export = Fixtures.Export("llama-genai-mha-fp16", "model.onnx"); // the builder's own fp16 model
        var native = CliRunner.Run("convert", fp16Export, "-o", _temp.Path("mha.onnx"), "--fp16");
        Assert.Equal([$"error: {fp16Export}: cannot convert to fp16: the model has no float32 weights or inputs to convert"], native.StderrLines);
        var usage = CliRunner.Run("convert", source, "-o", _temp.Path("x.onnx"), "--fp16-io");
        Assert.Equal(2, usage.ExitCode);
        Assert.Contains("--fp16-io applies only with --fp16", usage.Stderr);
    }

    [Fact]
    public void Pipeline_CanCallTheConversionFileToFile()
    {
        string source = Import("decomposed"), converted = _temp.Path("api.onnx");
        var (saved, conversion) = Fp16File.Convert(source, converted, save: new SaveOptions { Layout = TensorLayout.External, Durable = false });
        Assert.True(conversion.Changed);
        Assert.True(conversion.Count(Fp16Conversion.KeptFloat32Nodes) > 0); // the decomposed RMSNorms' statistics and Softmax
        Assert.Equal(converted, saved.ModelPath);
        ShippedModel.Require(converted);
    }

    /// <summary>Next-token logits of both on one sentence (with its BOS), token positions in one run.</summary>
    private static Fp16Closeness Compare(string fp32, string fp16)
    {
        int[] ids = Stories260K.Tokenizer.Encode(Stories260K.Sentence);
        using var a = new KvCacheDecoder(fp32);
        using var b = new KvCacheDecoder(fp16);
        var la = a.Run(ids).Logits;
        var lb = b.Run(ids).Logits;
        double maxAbs = 0, maxDiff = 0;
        int agree = 0;
        for (int t = 0; t < la.Length; t++)
        {
            for (int i = 0; i < la[t].Length; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(la[t][i]));
                maxDiff = Math.Max(maxDiff, Math.Abs(la[t][i] - lb[t][i]));
            }
            if (ArgMax(la[t]) == ArgMax(lb[t])) agree++;
        }
        return new Fp16Closeness(maxDiff, maxDiff / maxAbs, (double)agree / la.Length, la.Length);
    }

    private static int ArgMax(float[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    public void Dispose() => _temp.Dispose();
}

public sealed record Fp16Closeness(double MaxDiff, double RelativeMaxDiff, double Top1Agreement, int Positions)
{
    public override string ToString() => $"max |logit diff| {MaxDiff:G3} ({RelativeMaxDiff:P2} of max |logit|), top-1 agreement {Top1Agreement:P1} over {Positions} positions";
}
