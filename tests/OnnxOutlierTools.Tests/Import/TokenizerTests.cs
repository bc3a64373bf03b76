using OnnxOutlierTools.Import;

namespace OnnxOutlierTools.Tests.Import;

public class TokenizerTests
{
    private static Llama2cTokenizer Tok => Stories260K.Tokenizer;

    [Fact]
    public void Load_Tok512_Has512TokensAndMaxLength7()
    {
        Assert.Equal(512, Tok.VocabSize);
        Assert.Equal(7, Tok.MaxTokenLength);
        Assert.Equal(410, Tok.Lookup(" "u8));
    }

    [Fact]
    public void Encode_OnceUponATime_MatchesManifest()
    {
        Assert.Equal(Stories260K.OnceUponATime, Tok.Encode("Once upon a time"));
    }

    [Fact]
    public void Encode_WithoutBos_StartsWithDummyPrefix()
    {
        Assert.Equal([403, 407, 261, 378], Tok.Encode("Once upon a time", bos: false));
        Assert.Equal([1], Tok.Encode(""));
        Assert.Equal([1, 2], Tok.Encode("", eos: true));
    }

    [Fact]
    public void Encode_CharacterNotInVocab_FallsBackToBytesPlusThree()
    {
        // "ü" is U+00FC = C3 BC in UTF-8; tok512 has no such piece, so it becomes bytes 0xC3+3, 0xBC+3.
        Assert.Equal([1, 410, 0xC3 + 3, 0xBC + 3], Tok.Encode("ü"));
        // "é" and "€" are pieces of their own (ids 485 and 503).
        Assert.Equal([1, 410, 485, 503], Tok.Encode("é€"));
    }

    [Fact]
    public void Encode_MergesTheHighestScoringPairFirst()
    {
        int[] ids = Tok.Encode("the", bos: false);
        // Whatever the merge order, the result must be a sequence of pieces that concatenate to " the"
        // and no adjacent pair of which is itself a piece (the loop ran to completion).
        Assert.Equal(" the", string.Concat(ids.Select(i => System.Text.Encoding.UTF8.GetString(Tok.Piece(i)))));
        for (int i = 0; i + 1 < ids.Length; i++)
            Assert.Equal(-1, Tok.Lookup([.. Tok.Piece(ids[i]), .. Tok.Piece(ids[i + 1])]));
        Assert.Equal([265], ids); // " the" is one piece (score -6)
    }

    [Fact]
    public void Decode_GreedyContinuation_GivesManifestText()
    {
        Assert.Equal(Stories260K.GreedyText, Tok.Decode(Stories260K.GreedyContinuation, previous: Stories260K.OnceUponATime[^1]));
    }

    [Fact]
    public void Decode_AfterBos_DropsLeadingSpace()
    {
        Assert.Equal("Once", Tok.Decode(Llama2cTokenizer.Bos, 403));
        Assert.Equal(" Once", Tok.Decode(410, 403));
        Assert.Equal("Once upon a time", Tok.Decode(Stories260K.OnceUponATime.Skip(1), previous: Llama2cTokenizer.Bos));
    }

    [Fact]
    public void Decode_BytePiece_GivesTheByte()
    {
        Assert.Equal("<0x0A>", System.Text.Encoding.UTF8.GetString(Tok.Piece(0x0A + 3)));
        Assert.Equal([(byte)'\n'], Tok.DecodeBytes(400, 0x0A + 3));
        Assert.Equal("ü", Tok.Decode([0xC3 + 3, 0xBC + 3], previous: 400));
    }

    [Fact]
    public void EncodeDecode_Sentence_RoundTrips()
    {
        var ids = Tok.Encode(Stories260K.Sentence);
        Assert.Equal(Llama2cTokenizer.Bos, ids[0]);
        Assert.Equal(Stories260K.Sentence, Tok.Decode(ids.Skip(1), previous: Llama2cTokenizer.Bos));
    }

    [Fact]
    public void Load_TruncatedFile_ReportsFileAndEntry()
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory("oot-tok-").FullName, "tok.bin");
        var bytes = File.ReadAllBytes(Stories260K.TokenizerPath);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length - 3).ToArray());
        var ex = Assert.Throws<Llama2cFormatException>(() => Llama2cTokenizer.Load(path, 512));
        Assert.StartsWith(path, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Directory.Delete(Path.GetDirectoryName(path)!, true);
    }
}

public class TokenizerStreamTests
{
    [Fact]
    public void Encode_TinyStoriesSample_GivesManifestStream()
    {
        // MANIFEST "Perplexity" step 1-2: split on blank lines, strip, drop empty chunks, encode each with BOS.
        string text = File.ReadAllText(Fixtures.Path("text", "tinystories-sample.txt"));
        var chunks = text.Split("\n\n").Select(c => c.Trim()).Where(c => c.Length > 0).ToList();
        Assert.Equal(1087, chunks.Count);
        var stream = chunks.SelectMany(c => Stories260K.Tokenizer.Encode(c)).ToList();
        Assert.Equal(95877, stream.Count);
        Assert.Equal([1, 301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415], stream.Take(12));
        Assert.Equal(203, stream.Take(20000).Count(t => t == Llama2cTokenizer.Bos));
    }
}
