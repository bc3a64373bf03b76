using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>The tokenizer.json written for a llama2.c tokenizer reads back through this tool's own Hugging Face
/// reader (<see cref="TokenizerLocator"/>) as the same tokenizer: the MANIFEST's ids, and run.c's encoding
/// (<see cref="Llama2cTokenizer"/>) of every story of the sample. (onnxruntime-genai's tokenizer is held to
/// the same in tests/OnnxOutlierTools.GenAI.Tests.)</summary>
public sealed class Llama2cTokenizerJsonTests : IDisposable
{
    private readonly TempFolder _temp = new("tokenizer-json");

    private string WriteTokenizerJson()
    {
        string path = _temp.Path("tokenizer.json");
        File.WriteAllText(path, Llama2cTokenizerJson.Create(Stories260K.Tokenizer, Stories260K.TokenizerPath));
        return path;
    }

    [Fact]
    public void OurHfReader_EncodesTheSampleAsRunC()
    {
        var hf = TokenizerLocator.LoadFile(WriteTokenizerJson());
        Assert.Equal(512, hf.VocabSize);
        Assert.Equal(Stories260K.OnceUponATime[1..], hf.Encode("Once upon a time"));
        Assert.True(hf.BosConvention.PrependsBos, hf.BosConvention.ToString()); // the template starts with <s>
        string text = File.ReadAllText(Fixtures.Path("text", "tinystories-sample.txt"));
        foreach (string story in text.Split("\n\n").Select(s => s.Trim()).Where(s => s.Length > 0).Take(300))
            Assert.Equal(Stories260K.Tokenizer.Encode(story, bos: false), hf.Encode(story));
        Assert.Equal(" the", hf.Decode(Stories260K.Tokenizer.Lookup(" the"u8)));
    }

    [Fact]
    public void NonUtf8Piece_IsRefusedNamingTheTokenizer()
    {
        // tok512.bin with token 300's piece replaced by a lone continuation byte (same length, so the file stays valid).
        byte[] bytes = File.ReadAllBytes(Stories260K.TokenizerPath);
        var original = Stories260K.Tokenizer;
        int offset = 4;
        for (int id = 0; id < 300; id++) offset += 8 + original.Piece(id).Length;
        for (int k = 0; k < original.Piece(300).Length; k++) bytes[offset + 8 + k] = 0x80;
        var broken = Llama2cTokenizer.Read(bytes, "broken.bin", 512);
        var ex = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizerJson.Create(broken, "broken.bin"));
        Assert.Contains("broken.bin", ex.Message);
        Assert.Contains("token 300 is not valid UTF-8", ex.Message);
    }

    [Fact]
    public void Cli_TokenizerOption_WrongVocabularyOrFlavour_IsOneLineAndWritesNothing()
    {
        string small = _temp.Path("tok-small.bin");
        var tok = Stories260K.Tokenizer;
        using (var w = new BinaryWriter(File.Create(small)))
        {
            w.Write(tok.MaxTokenLength);
            for (int id = 0; id < 300; id++) { w.Write(tok.Score(id)); w.Write(tok.Piece(id).Length); w.Write(tok.Piece(id)); }
        }
        string output = _temp.Path("out");
        var r = CliRunner.Run("import-llama2c", Stories260K.CheckpointPath, "-o", output, "--flavour", "genai-gqa", "--tokenizer", small);
        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.StderrLines);
        Assert.Contains(small, r.Stderr);
        Assert.False(Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any());

        var usage = CliRunner.Run("import-llama2c", Stories260K.CheckpointPath, "-o", output, "--tokenizer", Stories260K.TokenizerPath);
        Assert.Equal(2, usage.ExitCode);
        Assert.Contains("--tokenizer is for --flavour genai-gqa", usage.Stderr);
    }

    [Fact]
    public void Cli_GenAiFolderWithoutTokenizer_WarnsAndWritesTheRest()
    {
        string checkpoint = _temp.Path("ckpt", "stories260K.bin"); // alone in its folder: no tok512.bin beside it
        Directory.CreateDirectory(Path.GetDirectoryName(checkpoint)!);
        File.Copy(Stories260K.CheckpointPath, checkpoint);
        string output = _temp.Path("out");
        var r = CliRunner.Run("import-llama2c", checkpoint, "-o", output, "--flavour", "genai-gqa");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("no llama2.c tokenizer beside the checkpoint", r.Stderr);
        Assert.True(File.Exists(Path.Combine(output, "genai_config.json")));
        Assert.False(File.Exists(Path.Combine(output, "tokenizer.json")));
    }

    public void Dispose() => _temp.Dispose();
}
