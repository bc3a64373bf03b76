using System.Diagnostics;
using System.Globalization;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Import.Planted;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.ModelGen;

public static class Program
{
    private const string Usage = """
        usage:
          ModelGen tiny-llama <outdir> [--seed N] [--flavour F]
              tiny synthetic Llama (dim 64, hidden 176, 2 layers, 4 heads / 2 KV heads, vocab 256), FLOAT,
              weights of 1 KiB+ in model.onnx.data; the repository's onnx-models/tiny-llama
          ModelGen bench-llama <outdir> [--gigabytes G] [--seed N] [--flavour F]
              Llama-shaped FLOAT16 model of about G GiB (default 1) for load/save benchmarks; weights are
              generated while saving, external data
          ModelGen llama2c <checkpoint.bin> <outdir> [--flavour F] [--fp16]
              converts a llama2.c (legacy format) checkpoint
          ModelGen graph <out.onnx> [--nodes N] [--tensor-megabytes M]
              a chain of N element-wise nodes (default 1000000; SyntheticGraph) for memory measurements,
              with one generated FLOAT tensor of M MiB in <out.onnx>.data when M > 0
          ModelGen planted <outdir> [--flavour decomposed|genai-gqa] [--fixtures DIR] [--force]
              stories260K with planted outliers (massive activation, norm-gain channel outliers, attention
              sink) and ground-truth.json; the repository's onnx-models/planted-llama-*. Reads
              llama2c/stories260K.bin, llama2c/tok512.bin and text/tinystories-sample.txt under DIR
              (default $ONNX_OUTLIERS_FIXTURES, else ../shared/fixtures)
          ModelGen demo-text <out.txt> [--stories N] [--seed N] [--fixtures DIR] [--force]
              stories sampled from stories260K (temperature 0.9, seeded; default 60 stories, seed 1): the demo's
              bundled text (onnx-models/planted-llama-decomposed/demo-text.txt). Reads llama2c/ under DIR as for planted
        flavours: decomposed (default), decomposed-past, genai-gqa
        """;

    public static int Main(string[] args)
    {
        try
        {
            if (args.Length < 2) return Fail(Usage);
            var options = ParseOptions(args.Skip(2).ToArray(), out var positional);
            switch (args[0])
            {
                case "tiny-llama":
                    if (positional.Count != 0) return Fail(Usage);
                    return TinyLlama(args[1], Int(options, "seed", SyntheticDecoder.TinySeed), Flavour(options));
                case "bench-llama":
                    if (positional.Count != 0) return Fail(Usage);
                    return BenchLlama(args[1], Double(options, "gigabytes", 1.0), Int(options, "seed", 1), Flavour(options));
                case "graph":
                    if (positional.Count != 0) return Fail(Usage);
                    return SyntheticGraphFile(args[1], Int(options, "nodes", 1_000_000), Int(options, "tensor-megabytes", 0));
                case "llama2c":
                    if (positional.Count != 1) return Fail(Usage);
                    return Llama2c(args[1], positional[0], Flavour(options), options.ContainsKey("fp16"));
                case "planted":
                    if (positional.Count != 0) return Fail(Usage);
                    return Planted(args[1], Flavour(options), options.GetValueOrDefault("fixtures"), options.ContainsKey("force"));
                case "demo-text":
                    if (positional.Count != 0) return Fail(Usage);
                    return DemoTextFile(args[1], Int(options, "stories", 60), Int(options, "seed", 1), options.GetValueOrDefault("fixtures"), options.ContainsKey("force"));
                default:
                    return Fail(Usage);
            }
        }
        catch (Exception ex) when (ex is ArgumentException or Llama2cFormatException or ModelSaveException or IOException or FormatException)
        {
            return Fail($"error: {ex.Message}");
        }
    }

    private static int TinyLlama(string outDir, int seed, LlamaOnnxFlavour flavour)
    {
        var config = SyntheticDecoder.TinyConfig;
        var options = new LlamaOnnxOptions
        {
            Flavour = flavour,
            Description = $"tiny synthetic Llama (OnnxOutlierTools.Import SyntheticDecoder, TinyConfig, seed {seed}); random weights",
        };
        using var model = SyntheticDecoder.CreateModel(config, seed, options);
        Save(model, outDir, config, flavour, "float32");
        return 0;
    }

    private static int BenchLlama(string outDir, double gigabytes, int seed, LlamaOnnxFlavour flavour)
    {
        var config = SyntheticDecoder.BenchmarkConfig(gigabytes);
        Console.WriteLine($"bench-llama: {config.Layers} layers, dim {config.Dim}, {config.ParameterCount:N0} parameters ({config.ParameterCount * 2.0 / (1L << 30):F2} GiB FLOAT16)");
        using var model = SyntheticDecoder.CreateBenchmarkModel(config, seed, flavour);
        Save(model, outDir, config, flavour, "float16");
        return 0;
    }

    private static int SyntheticGraphFile(string path, int nodes, int tensorMegabytes)
    {
        var clock = Stopwatch.StartNew();
        using var model = SyntheticGraph.Create(nodes, (long)tensorMegabytes << 20);
        var layout = tensorMegabytes > 0 ? TensorLayout.External : TensorLayout.Preserve;
        Report(ModelWriter.Save(model, path, new SaveOptions { Layout = layout, Overwrite = true }), clock);
        return 0;
    }

    private static int Llama2c(string checkpoint, string outDir, LlamaOnnxFlavour flavour, bool fp16)
    {
        var clock = Stopwatch.StartNew();
        Report(DecoderFolder.FromLlama2c(checkpoint, outDir, flavour, fp16), clock);
        return 0;
    }

    private static int Planted(string outDir, LlamaOnnxFlavour flavour, string? fixtures, bool force)
    {
        var clock = Stopwatch.StartNew();
        fixtures ??= Environment.GetEnvironmentVariable("ONNX_OUTLIERS_FIXTURES") is { Length: > 0 } env ? env : Path.Combine("..", "shared", "fixtures");
        string checkpoint = Path.Combine(fixtures, "llama2c", "stories260K.bin"), tokenizer = Path.Combine(fixtures, "llama2c", "tok512.bin");
        var (planted, truth) = PlantedModelFolder.Create(checkpoint, tokenizer, Path.Combine(fixtures, "text", "tinystories-sample.txt"));
        PlantedModelFolder.Write(outDir, flavour, planted, truth, tokenizer, force);
        Console.WriteLine($"wrote {outDir} ({PlantedModelFolder.FolderName(flavour)} layout): perplexity {truth.Perplexity.Before:F4} -> {truth.Perplexity.After:F4}, " +
            $"massive activation {truth.MassiveActivation.Carried[0].Value:G5} at block {truth.MassiveActivation.Block}, sink mass {truth.AttentionSink.MeanMassOnPosition0:F3}, in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    private static int DemoTextFile(string path, int stories, int seed, string? fixtures, bool force)
    {
        var clock = Stopwatch.StartNew();
        fixtures ??= Environment.GetEnvironmentVariable("ONNX_OUTLIERS_FIXTURES") is { Length: > 0 } env ? env : Path.Combine("..", "shared", "fixtures");
        if (File.Exists(path) && !force) return Fail($"{path}: exists (use --force to replace it)");
        var weights = Llama2cCheckpoint.Load(Path.Combine(fixtures, "llama2c", "stories260K.bin"));
        var tokenizer = Llama2cTokenizer.Load(Path.Combine(fixtures, "llama2c", "tok512.bin"), weights.Config.VocabSize);
        string text = DemoText.Generate(weights, tokenizer, stories, seed);
        AtomicTextFile.Write(path, text, overwrite: force);
        Console.WriteLine($"wrote {path}: {stories} stories, {tokenizer.Encode(text, bos: false).Length} tokens, in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    private static void Save(Model model, string outDir, DecoderConfig config, LlamaOnnxFlavour flavour, string dtype)
    {
        var clock = Stopwatch.StartNew();
        Report(DecoderFolder.Save(model, outDir, config, flavour, dtype), clock);
    }

    private static void Report(SaveResult result, Stopwatch clock) =>
        Console.WriteLine($"wrote {result.ModelPath} ({result.EmbeddedTensors} embedded, {result.ExternalTensors} external tensors, " +
            $"{result.ExternalBytes:N0} bytes in {Path.GetFileName(result.DataPath ?? "-")}) in {clock.Elapsed.TotalSeconds:F1} s");

    private static Dictionary<string, string> ParseOptions(string[] args, out List<string> positional)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        positional = [];
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) { positional.Add(args[i]); continue; }
            string name = args[i][2..];
            if (name is "fp16" or "force") { options[name] = "true"; continue; }
            if (i + 1 >= args.Length) throw new ArgumentException($"option --{name} needs a value");
            options[name] = args[++i];
        }
        foreach (var key in options.Keys)
            if (key is not ("stories" or "seed" or "gigabytes" or "flavour" or "fp16" or "force" or "fixtures" or "nodes" or "tensor-megabytes")) throw new ArgumentException($"unknown option --{key}");
        return options;
    }

    private static LlamaOnnxFlavour Flavour(Dictionary<string, string> options) =>
        DecoderFolder.ParseFlavour(options.GetValueOrDefault("flavour", "decomposed"));

    private static int Int(Dictionary<string, string> options, string name, int fallback) =>
        options.TryGetValue(name, out var s) ? int.Parse(s, CultureInfo.InvariantCulture) : fallback;

    private static double Double(Dictionary<string, string> options, string name, double fallback) =>
        options.TryGetValue(name, out var s) ? double.Parse(s, CultureInfo.InvariantCulture) : fallback;

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }
}
