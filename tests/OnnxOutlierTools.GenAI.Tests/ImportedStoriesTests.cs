using OnnxOutlierTools.Import;
using OnnxOutlierTools.Tests;
using OnnxOutlierTools.Tests.Cli;
using OnnxOutlierTools.Tests.Import;
using Xunit.Abstractions;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary><c>import-llama2c --flavour genai-gqa</c> on stories260K writes a folder onnxruntime-genai runs:
/// its tokenizer (our tokenizer.json) encodes and decodes as run.c's (our <see cref="Llama2cTokenizer"/>,
/// checked against the MANIFEST's ids), and its greedy tokens are ours and the PyTorch reference's.</summary>
public sealed class ImportedStoriesTests(ImportedStoriesFolder stories, ITestOutputHelper output) : IClassFixture<ImportedStoriesFolder>
{
    private readonly string _folder = stories.Path;

    [Fact]
    public void Folder_HoldsWhatGenAiNeeds()
    {
        Assert.Equal(DecoderFolder.FileNamesFor(LlamaOnnxFlavour.GenAiGqa).Order(StringComparer.Ordinal),
            Directory.EnumerateFiles(_folder).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void GenAiGreedy_FromText_EqualsOurDecoderAndTheReference()
    {
        var genai = GenAiGeneration.Greedy(_folder, "Once upon a time", 40, addSpecialTokens: true);
        output.WriteLine(genai.ToString());
        Assert.Equal(Stories260K.OnceUponATime, genai.PromptIds); // BOS from tokenizer.json's template
        Assert.Equal(OurGreedy.Run(Path.Combine(_folder, "model.onnx"), Stories260K.OnceUponATime, 40), genai.NewTokens);
        Assert.Equal(Stories260K.GreedyContinuation, genai.NewTokens);
        Assert.Equal(Stories260K.GreedyText, genai.NewText);
    }

    [Fact]
    public void GenAiTokenizer_EncodesAndDecodesTheSampleLikeRunC()
    {
        var ours = Stories260K.Tokenizer;
        using var withBos = GenAiGeneration.OpenTokenizer(_folder, addSpecialTokens: true);
        using var plain = GenAiGeneration.OpenTokenizer(_folder, addSpecialTokens: false);
        string text = File.ReadAllText(Fixtures.Path("text", "tinystories-sample.txt"));
        // The MANIFEST's stories: split on blank lines, trimmed, empty ones dropped (1087 chunks).
        var stories = text.Split("\n\n").Select(s => s.Trim()).Where(s => s.Length > 0).ToArray();
        Assert.Equal(1087, stories.Length);
        long tokens = 0;
        foreach (string story in stories)
        {
            int[] expected = ours.Encode(story);
            int[] genai = withBos.Encode(story);
            Assert.True(expected.SequenceEqual(genai), $"{story}\nours  [{string.Join(",", expected)}]\ngenai [{string.Join(",", genai)}]");
            Assert.Equal(expected[1..], plain.Encode(story));
            Assert.Equal(ours.Decode(expected[1..], Llama2cTokenizer.Bos), withBos.Decode(expected));
            tokens += expected.Length;
        }
        Assert.Equal(95877, tokens); // the MANIFEST's stream length
        output.WriteLine($"{stories.Length} stories, {tokens} tokens: same ids and text");
    }
}

/// <summary>stories260K imported once per test class through the CLI, as a user would.</summary>
public sealed class ImportedStoriesFolder : IDisposable
{
    private readonly TempFolder _temp = new("genai-stories");

    public ImportedStoriesFolder()
    {
        string folder = _temp.Folder("stories260K-genai");
        var result = CliRunner.Run("import-llama2c", Stories260K.CheckpointPath, "-o", folder, "--flavour", "genai-gqa");
        if (result.ExitCode != 0) throw new InvalidOperationException(result.ToString());
        Path = folder;
    }

    public string Path { get; }

    public void Dispose() => _temp.Dispose();
}
