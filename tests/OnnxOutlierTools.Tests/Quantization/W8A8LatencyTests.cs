using System.Diagnostics;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Quantization.W8A8;
using OnnxOutlierTools.Runtime;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>CPU latency of the two W8A8 forms and int4 MatMulNBits (accuracy_level 0 and 4) against FP32 on a generated Llama-shaped model (dim 1024, FFN 2816, 4 layers,
/// 16 heads / 4 KV heads, vocabulary 4096, random weights; 54M parameters): one 128-token prompt, ORT_ENABLE_ALL, median of 15
/// after 3 warm-ups, every model alternating. Opt-in (ONNX_OUTLIERS_W8A8_LATENCY=1): it takes about a minute; the README's
/// figures come from it. Asserts what must hold for the figures to mean anything: finite logits and int8 kernels in use.</summary>
public sealed class W8A8LatencyTests(ITestOutputHelper output)
{
    public const string EnabledVariable = "ONNX_OUTLIERS_W8A8_LATENCY";

    [SkippableFact]
    public void Prompt128_Fp32_Static_Dynamic()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable(EnabledVariable) == "1", $"set {EnabledVariable}=1 to measure W8A8 latency on the CPU");
        using var temp = new TempFolder("w8a8-latency");
        var config = new DecoderConfig(dim: 1024, hiddenDim: 2816, layers: 4, heads: 16, kvHeads: 4, vocabSize: 4096, maxSeqLen: 256);
        string fp32 = temp.Path("fp32", "model.onnx");
        using (var model = SyntheticDecoder.CreateModel(config, seed: 5))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(fp32)!);
            ModelWriter.Save(model, fp32, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        }
        var random = new Random(3);
        var windows = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, 128).Select(_ => random.Next(3, config.VocabSize)).ToArray()).ToArray();
        var stats = QuantizeKit.Calibrate(fp32, windows);
        var (staticPath, _) = QuantizeKit.Quantize(fp32, new W8A8Scheme(ActivationMode.StaticPerTensor), temp.Folder("static"), stats);
        var (dynamicPath, _) = QuantizeKit.Quantize(fp32, new W8A8Scheme(ActivationMode.DynamicPerToken), temp.Folder("dynamic"));
        var (int4Path, _) = QuantizeKit.Quantize(fp32, new OnnxOutlierTools.Quantization.Int4.Int4Scheme(activationAware: false), temp.Folder("int4-0"));
        var (int4Level4Path, _) = QuantizeKit.Quantize(fp32, new OnnxOutlierTools.Quantization.Int4.Int4Scheme(activationAware: false), temp.Folder("int4-4"),
            options: new OnnxOutlierTools.Quantization.Common.QuantizationOptions { AccuracyLevel = 4 });
        Assert.True(QuantizeKit.OptimizedOps(staticPath, temp.Path("static", "opt.onnx")).ContainsKey("com.microsoft.MatMulIntegerToFloat"));
        Assert.True(QuantizeKit.OptimizedOps(dynamicPath, temp.Path("dynamic", "opt.onnx")).ContainsKey("MatMulInteger"));

        var paths = new[] { ("fp32", fp32), ("w8a8-static", staticPath), ("w8a8-dynamic", dynamicPath), ("int4-rtn acc 0", int4Path), ("int4-rtn acc 4", int4Level4Path) };
        var sessions = paths.Select(p => SessionFactory.Open(p.Item2, new SessionSettings { Device = ExecutionDevice.Cpu })).ToArray();
        try
        {
            var plan = OnnxOutlierTools.Calibration.FeedPlan.Create(fp32, sessions[0].Inputs, sessions[0].OutputNames);
            var feeds = plan.Build(1, 128, windows[0], 0, null);
            var times = paths.Select(_ => new List<double>()).ToArray();
            for (int round = 0; round < 18; round++)
                for (int m = 0; m < sessions.Length; m++)
                {
                    var clock = Stopwatch.StartNew();
                    var logits = sessions[m].Run(feeds, ["logits"])[0].AsSpan<float>();
                    clock.Stop();
                    Assert.True(float.IsFinite(logits[0]) && float.IsFinite(logits[^1]));
                    if (round >= 3) times[m].Add(clock.Elapsed.TotalMilliseconds);
                }
            double fp32Median = Median(times[0]);
            for (int m = 0; m < paths.Length; m++)
                output.WriteLine($"{paths[m].Item1,-13} {Median(times[m]),8:F1} ms per 128-token prompt ({Median(times[m]) / fp32Median:F2}x fp32), " +
                    $"{new FileInfo(paths[m].Item2 + ".data").Length / 1e6:F0} MB of weights");
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

    /// <summary>Decoding with the KV cache, the same five models in the decomposed-past flavour: eval's latency measurement
    /// (prompt of 128 tokens, then 16 tokens one at a time, 1 warm-up, median of 5), one model after the other in one run.</summary>
    [SkippableFact]
    public void Decode16_AfterPrompt128_Fp32_W8A8_Int4()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable(EnabledVariable) == "1", $"set {EnabledVariable}=1 to measure decoding latency on the CPU");
        using var temp = new TempFolder("decode-latency");
        var config = new DecoderConfig(dim: 1024, hiddenDim: 2816, layers: 4, heads: 16, kvHeads: 4, vocabSize: 4096, maxSeqLen: 256);
        string fp32 = temp.Path("fp32", "model.onnx");
        using (var model = SyntheticDecoder.CreateModel(config, seed: 5, new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.DecomposedWithPast }))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(fp32)!);
            ModelWriter.Save(model, fp32, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        }
        var random = new Random(3);
        var windows = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, 144).Select(_ => random.Next(3, config.VocabSize)).ToArray()).ToArray();
        var stats = QuantizeKit.Calibrate(fp32, windows);
        var models = new List<(string Name, string Path)> { ("fp32", fp32) };
        models.Add(("w8a8-static", QuantizeKit.Quantize(fp32, new W8A8Scheme(ActivationMode.StaticPerTensor), temp.Folder("static"), stats).Path));
        models.Add(("w8a8-dynamic", QuantizeKit.Quantize(fp32, new W8A8Scheme(ActivationMode.DynamicPerToken), temp.Folder("dynamic")).Path));
        models.Add(("int4-rtn acc 0", QuantizeKit.Quantize(fp32, new OnnxOutlierTools.Quantization.Int4.Int4Scheme(false), temp.Folder("int4-0")).Path));
        models.Add(("int4-rtn acc 4", QuantizeKit.Quantize(fp32, new OnnxOutlierTools.Quantization.Int4.Int4Scheme(false), temp.Folder("int4-4"),
            options: new OnnxOutlierTools.Quantization.Common.QuantizationOptions { AccuracyLevel = 4 }).Path));
        string ids = temp.Path("window.json");
        File.WriteAllText(ids, "[[" + string.Join(",", windows[0]) + "]]");
        double? fp32TokensPerSecond = null;
        foreach (var (name, path) in models)
        {
            var result = OnnxOutlierTools.Evaluation.ModelEvaluator.Evaluate(new OnnxOutlierTools.Evaluation.EvalRequest
            {
                Model = path, Ids = ids, Device = ExecutionDevice.Cpu,
                Latency = new OnnxOutlierTools.Evaluation.LatencySettings { Warmup = 1, Repetitions = 5, DecodeTokens = 16 },
            });
            var latency = result.Latency!.Model;
            Assert.NotNull(latency.DecodeTokensPerSecond);
            fp32TokensPerSecond ??= latency.DecodeTokensPerSecond;
            output.WriteLine($"{name,-15} prompt {latency.PromptTokens} tokens {latency.PromptMs,7:F1} ms, decode {latency.DecodeTokens} tokens " +
                $"{latency.DecodeMsPerToken,6:F2} ms/token = {latency.DecodeTokensPerSecond,6:F1} tokens/s ({latency.DecodeTokensPerSecond / fp32TokensPerSecond:F2}x fp32)");
        }
    }
}
