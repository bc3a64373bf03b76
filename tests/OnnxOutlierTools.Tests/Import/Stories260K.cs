using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>Facts about stories260K from fixtures/MANIFEST.md ("Reference numbers: stories260K"), and the
/// fixture files, loaded once.</summary>
internal static class Stories260K
{
    public static readonly int[] OnceUponATime = [1, 403, 407, 261, 378];

    public static readonly int[] GreedyContinuation =
    [
        432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
        411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426,
    ];

    public const string GreedyText =
        ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.";

    /// <summary>A sentence for logit comparisons (not the greedy text, so the models see new input).</summary>
    public const string Sentence = "Lily and Ben went to the park. They saw a big dog and played with a red ball.";

    public static string CheckpointPath => Fixtures.Path("llama2c", "stories260K.bin");
    public static string TokenizerPath => Fixtures.Path("llama2c", "tok512.bin");
    public static string TorchNoPast => Fixtures.Export("llama-torch-nopast", "model.onnx");
    public static string TorchPast => Fixtures.Export("llama-torch-past", "model.onnx");

    private static readonly Lazy<DecoderWeights> s_weights = new(() => Llama2cCheckpoint.Load(CheckpointPath));
    private static readonly Lazy<Llama2cTokenizer> s_tokenizer = new(() => Llama2cTokenizer.Load(TokenizerPath, 512));

    public static DecoderWeights Weights => s_weights.Value;
    public static Llama2cTokenizer Tokenizer => s_tokenizer.Value;

    public static int[] PromptAndContinuation => [.. OnceUponATime, .. GreedyContinuation];
}

/// <summary>stories260K written in each flavour (FLOAT) to a temporary folder, once per test class.</summary>
public sealed class Stories260KModels : IDisposable
{
    public Stories260KModels()
    {
        Folder = Directory.CreateTempSubdirectory("oot-import-").FullName;
        foreach (var flavour in Enum.GetValues<LlamaOnnxFlavour>())
        {
            using var model = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Flavour = flavour });
            string dir = Directory.CreateDirectory(Path.Combine(Folder, flavour.ToString())).FullName;
            ModelWriter.Save(model, Path.Combine(dir, "model.onnx"), new SaveOptions { Layout = TensorLayout.External, Durable = false });
        }
    }

    public string Folder { get; }

    public string PathOf(LlamaOnnxFlavour flavour) => Path.Combine(Folder, flavour.ToString(), "model.onnx");

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
